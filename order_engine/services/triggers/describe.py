"""What a waiting order waits for, as its events say it: the first `pending` event, a re-armed
order's `pending` event, and the `triggered` part of the event that routes it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from order_engine.domain.triggers import BracketLeg, plain, shown_level
from order_engine.models import OrderType


def waiting_for(
    order_type: str, token_out: str, limit_price: Decimal | None, max_price: Decimal | None
) -> dict[str, Any]:
    """What a limit or sniper order waits for."""
    if order_type == OrderType.SNIPER.value:
        pool: dict[str, Any] = {"pool": {"mint": token_out}}
        if max_price is not None:
            pool["maxPrice"] = plain(max_price)
        return pool
    return {"limitPrice": plain(limit_price) if limit_price is not None else None}


def awaits(order_type: str, token_out: str, values: dict[str, Any]) -> dict[str, Any]:
    """What an order of any type waits for, from its trigger columns (`values`, named as the
    order's columns): a stop its price, a bracket both legs, a trailing stop its trail with
    its activation price, or its peak and trigger level once it trails."""
    if order_type == OrderType.STOP.value:
        return {"triggerPrice": plain(values["stop_price"])}
    if order_type == OrderType.OCO.value:
        return {
            BracketLeg.TAKE_PROFIT.value: {"limitPrice": plain(values["limit_price"])},
            BracketLeg.STOP_LOSS.value: {"triggerPrice": plain(values["stop_price"])},
        }
    if order_type == OrderType.TRAILING_STOP.value:
        return trailing(values)
    return waiting_for(order_type, token_out, values.get("limit_price"), values.get("max_price"))


def trailing(values: dict[str, Any]) -> dict[str, Any]:
    """A trailing stop's trail, activation price, and once it trails its peak and level."""
    shown: dict[str, Any] = {"trailBps": values["trail_bps"]}
    if values.get("activation_price") is not None:
        shown["activationPrice"] = plain(values["activation_price"])
    peak = values.get("peak_price")
    if values.get("trail_since") is not None and peak:
        shown["peakPrice"] = plain(peak)
        shown["triggerLevel"] = plain(shown_level(peak, values["trail_bps"]))
    return shown


TRIGGER_COLUMNS = (
    "limit_price",
    "max_price",
    "stop_price",
    "trail_bps",
    "activation_price",
    "peak_price",
    "trail_since",
)


def awaited(order: Any) -> dict[str, Any]:
    """What a waiting order (a `models.Order`) waits for: the executor says it when it puts a
    triggered order back to waiting."""
    return awaits(
        order.type, order.token_out, {name: getattr(order, name) for name in TRIGGER_COLUMNS}
    )
