"""An order that waits, as intake writes it: its trigger columns and what its first event says.

Each type's trigger is met or not by the engine's own quote at submission, as the trigger engine
would decide it: a limit, stop or bracket already met runs at once (its first event says which
condition was met and by what quote) instead of waiting for the next evaluation; a trailing stop
starts trailing at once (or when its activation price is reached) from its class's quote.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.domain.amounts import required_out_atoms
from order_engine.domain.time import format_timestamp
from order_engine.domain.tokens import Token, decimal_text
from order_engine.domain.triggers import (
    BracketLeg,
    activation_met,
    level_key,
    oco_leg,
    plain,
    quantized_down,
    size_class,
    stop_ceiling_atoms,
)
from order_engine.models import OrderType
from order_engine.services.triggers.describe import awaits
from order_engine.services.triggers.limits import meets, sniper_trigger_price

# The engine's net quote for (tokenIn, tokenOut, atoms), in atoms; None when it cannot quote.
Quote = Callable[[Token, Token, int], int | None]
# A size class's quote for (tokenIn, tokenOut, k), tokenOut per tokenIn; None likewise.
ClassQuote = Callable[[Token, Token, int], Fraction | None]
Trigger = tuple[dict[str, Any], dict[str, Any]]


def trigger_fields(data: dict[str, Any], quote: Quote, class_quote: ClassQuote) -> Trigger:
    """The order's trigger columns and its first event's data beyond the common fields (empty
    for a market order)."""
    order_type = data["type"]
    if order_type == OrderType.MARKET.value:
        return {}, {}
    values: dict[str, Any] = {"expires_at": data.get("expiresAt"), "waiting": True}
    if order_type in (OrderType.LIMIT.value, OrderType.SNIPER.value):
        values |= {"limit_price": data.get("limitPrice"), "max_price": data.get("maxPrice")}
        limit = data.get("limitPrice")
        values["trigger_price"] = (
            limit if limit is not None else sniper_trigger_price(data.get("maxPrice"))
        )
    else:
        values["size_class"] = size_class(data["tokenIn"].to_atoms(data["amount"]))
        values |= _protective(data, class_quote, values["size_class"])
    extra: dict[str, Any] = {"waitingFor": awaits(order_type, data["tokenOut"].mint, values)}
    if data.get("expiresAt") is not None:
        extra["expiresAt"] = format_timestamp(data["expiresAt"])
    if order_type in (OrderType.LIMIT.value, OrderType.STOP.value, OrderType.OCO.value):
        _met_at_submission(data, quote, values, extra)
    return values, extra


def _protective(data: dict[str, Any], class_quote: ClassQuote, k: int) -> dict[str, Any]:
    """A stop's, a bracket's or a trailing stop's own columns."""
    order_type = data["type"]
    if order_type == OrderType.STOP.value:
        return {"stop_price": data["triggerPrice"]}
    if order_type == OrderType.OCO.value:
        take = data["takeProfit"]["limitPrice"]
        return {
            "limit_price": take,
            "trigger_price": take,
            "stop_price": data["stopLoss"]["triggerPrice"],
        }
    return trailing_start(
        data["trailBps"],
        data.get("activationPrice"),
        class_quote(data["tokenIn"], data["tokenOut"], k),
        datetime.now(UTC),
    )


def trailing_start(
    trail_bps: int, activation: Any, price: Fraction | None, now: datetime
) -> dict[str, Any]:
    """A trailing stop's columns: waiting for its activation price (on the limit index, as a
    limit at that price), or trailing from now with its class's quote as its peak (0 on the
    stop index when there is no quote: the engine's first mark gives it one)."""
    values: dict[str, Any] = {"trail_bps": trail_bps, "activation_price": activation}
    if activation is not None and (price is None or not activation_met(price, activation)):
        return values | {"trigger_price": activation}
    peak = quantized_down(price) if price is not None and price > 0 else None
    level = level_key(peak, trail_bps) if peak is not None else 0
    return values | {"trail_since": now, "peak_price": peak, "stop_price": level}


def _met_at_submission(
    data: dict[str, Any], quote: Quote, values: dict[str, Any], extra: dict[str, Any]
) -> None:
    """A limit, stop or bracket that the engine's quote meets now runs at once: not waiting,
    its first event saying what met it, and by what quote, instead of what it waits for."""
    token_in, token_out, amount = data["tokenIn"], data["tokenOut"], data["amount"]
    quoted = quote(token_in, token_out, token_in.to_atoms(amount))
    if quoted is None:
        return
    extra["quotedAmountOut"] = decimal_text(token_out.from_atoms(quoted))
    met = _met(data["type"], quoted, amount, token_out, values)
    if met is None:
        return
    key, condition = met
    values |= {"waiting": False, "triggered_at": datetime.now(UTC)}
    condition["quotedAmountOut"] = extra["quotedAmountOut"]
    extra.clear()
    extra[key] = condition
    if values.get("trigger_leg"):
        extra["leg"] = values["trigger_leg"]


def _met(
    order_type: str, quoted: int, amount: Any, token_out: Token, values: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """(the first event's key, the condition met) when `quoted` meets the order, else None; a
    bracket's leg is set on `values`."""
    limit: Decimal | None = values.get("limit_price")
    stop: Decimal | None = values.get("stop_price")
    floor = required_out_atoms(amount, limit, None, token_out.decimals)
    ceiling = -1 if stop is None else stop_ceiling_atoms(amount, stop, token_out.decimals)
    required = {"requiredAmountOut": decimal_text(token_out.from_atoms(floor))}
    if order_type == OrderType.STOP.value and stop is not None:
        met = quoted <= ceiling
        return ("stopMetAtSubmission", {"triggerPrice": plain(stop)}) if met else None
    if order_type == OrderType.LIMIT.value and limit is not None:
        met = meets(quoted, floor)
        return ("limitMetAtSubmission", {"limitPrice": plain(limit), **required}) if met else None
    if limit is None or stop is None:
        return None
    leg = oco_leg(quoted, floor, ceiling)
    if leg is None:
        return None
    values["trigger_leg"] = leg.value
    if leg is BracketLeg.STOP_LOSS:
        return "bracketMetAtSubmission", {"leg": leg.value, "triggerPrice": plain(stop)}
    return "bracketMetAtSubmission", {"leg": leg.value, "limitPrice": plain(limit), **required}
