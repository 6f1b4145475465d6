"""A TWAP order body's own fields: `slices` and `intervalS`, a twap's and nobody else's. Shape
only: when its slices run is the scheduler's business (services/twap.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from order_engine.models import OrderType


def twap_problems(
    data: dict[str, Any], horizon: timedelta, known: dict[str, list[str]]
) -> dict[str, list[str]]:
    """slices and intervalS: a twap's, required there and nowhere else; its last slice within
    the horizon, and at least one atom of tokenIn per slice."""
    errors: dict[str, list[str]] = {}
    is_twap = data.get("type") == OrderType.TWAP.value
    for name in ("slices", "intervalS"):
        if data.get(name) is not None and not is_twap:
            errors[name] = [f"Not used by {data.get('type')} orders."]
        elif data.get(name) is None and is_twap:
            errors[name] = ["Missing data for required field (twap orders)."]
    slices, interval_s = data.get("slices"), data.get("intervalS")
    if errors or not is_twap or slices is None or interval_s is None:
        return errors
    if (slices - 1) * interval_s > horizon.total_seconds():
        errors["intervalS"] = [
            f"The last slice would start {(slices - 1) * interval_s} s from now, beyond "
            f"{int(horizon.total_seconds())} s (LIMIT_MAX_HORIZON_S)."
        ]
    token_in, amount = data.get("tokenIn"), data.get("amount")
    if token_in is not None and amount is not None and not {"tokenIn", "amount"} & set(known):
        atoms = amount.scaleb(token_in.decimals)
        if atoms < slices:
            errors["slices"] = [
                f"{slices} slices need at least {slices} of {token_in.symbol}'s smallest units; "
                f"{format(amount, 'f')} {token_in.symbol} is {atoms:f}."
            ]
    return errors
