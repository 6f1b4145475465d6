"""The trigger fields of an order body: which order type uses which, which it cannot do without,
and the shape of the prices they carry. Shape only: whether the market meets them is the
trigger engine's business (services/triggers/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from order_engine.models import OrderType

PRICE_DECIMALS = 18  # numeric(38, 18)
PRICE_MAX = Decimal(10) ** 20

LIMIT, SNIPER, TWAP = OrderType.LIMIT.value, OrderType.SNIPER.value, OrderType.TWAP.value
STOP, OCO, TRAILING = OrderType.STOP.value, OrderType.OCO.value, OrderType.TRAILING_STOP.value
WAITING_TYPES = frozenset({LIMIT, SNIPER, STOP, OCO, TRAILING})
# The order types that sell to get out of a position: their slippage default is
# STOP_SLIPPAGE_BPS, wider than a market order's.
PROTECTIVE_TYPES = frozenset({STOP, OCO, TRAILING})

# Each trigger field and the order types that use it; any other type refuses it by name.
USED_BY: dict[str, frozenset[str]] = {
    "limitPrice": frozenset({LIMIT, TWAP}),  # a twap's is optional
    "maxPrice": frozenset({SNIPER}),
    "triggerPrice": frozenset({STOP}),
    "takeProfit": frozenset({OCO}),
    "stopLoss": frozenset({OCO}),
    "trailBps": frozenset({TRAILING}),
    "activationPrice": frozenset({TRAILING}),
    "expiresAt": WAITING_TYPES,
    "expiresIn": WAITING_TYPES,
}
REQUIRED: dict[str, tuple[str, ...]] = {
    LIMIT: ("limitPrice",),
    STOP: ("triggerPrice",),
    OCO: ("takeProfit", "stopLoss"),
    TRAILING: ("trailBps",),
}


def trigger_problems(
    data: dict[str, Any], original: dict[str, Any], horizon: timedelta
) -> dict[str, list[str]]:
    """Each trigger field only where its order type uses it, and there when it needs it (a
    field sent but invalid is refused by its own message alone); the prices' precision and
    range; a bracket's take-profit above its stop-loss; the expiry within the horizon."""
    order_type = data.get("type")
    errors: dict[str, list[str]] = {}
    for name, types in USED_BY.items():
        if data.get(name) is not None and order_type not in types:
            errors[name] = [f"Not used by {order_type} orders."]
    for name in REQUIRED.get(str(order_type), ()):
        if data.get(name) is None and original.get(name) is None:
            errors[name] = [f"Missing data for required field ({order_type} orders)."]
    for name, price in _prices(data):
        problem = None if name in errors else _price_problem(price)
        if problem:
            errors[name] = [problem]
    bracket = _bracket_problem(data)
    if bracket and not {"takeProfit", "stopLoss"} & set(errors):
        errors["takeProfit"] = [bracket]
    errors.update(_expiry_problems(data, errors, horizon))
    return errors


def _prices(data: dict[str, Any]) -> list[tuple[str, Decimal]]:
    """(field, price) of every price the body carries, a bracket's legs by their leg."""
    found = [
        (name, data[name])
        for name in ("limitPrice", "maxPrice", "triggerPrice", "activationPrice")
        if data.get(name) is not None
    ]
    for leg, price in (("takeProfit", "limitPrice"), ("stopLoss", "triggerPrice")):
        value = (data.get(leg) or {}).get(price)
        if value is not None:
            found.append((leg, value))
    return found


def _price_problem(price: Decimal) -> str | None:
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > PRICE_DECIMALS:
        return f"At most {PRICE_DECIMALS} decimals."
    if price >= PRICE_MAX:
        return f"Must be below {PRICE_MAX:f}."
    return None


def _bracket_problem(data: dict[str, Any]) -> str | None:
    """A bracket takes profit above the market and stops a loss below it: a take-profit at or
    under the stop-loss would have both legs met by one quote."""
    take = (data.get("takeProfit") or {}).get("limitPrice")
    stop = (data.get("stopLoss") or {}).get("triggerPrice")
    if data.get("type") != OCO or take is None or stop is None or take > stop:
        return None
    return (
        f"takeProfit.limitPrice ({take:f}) must be above stopLoss.triggerPrice ({stop:f}): "
        "the bracket takes profit above the market and stops a loss below it."
    )


def _expiry_problems(
    data: dict[str, Any], errors: dict[str, list[str]], horizon: timedelta
) -> dict[str, list[str]]:
    """An expiry in the future and within the horizon, given one way only."""
    expires_at, expires_in = data.get("expiresAt"), data.get("expiresIn")
    ahead = f"Must be at most {int(horizon.total_seconds())} s (LIMIT_MAX_HORIZON_S) ahead."
    if expires_at is not None and expires_in is not None:
        return {"expiresIn": ["Give expiresAt or expiresIn, not both."]}
    if expires_in is not None and "expiresIn" not in errors and expires_in > horizon:
        return {"expiresIn": [ahead]}
    if expires_at is not None and "expiresAt" not in errors:
        now = datetime.now(UTC)
        if expires_at <= now:
            return {"expiresAt": ["Must be in the future."]}
        if expires_at > now + horizon:
            return {"expiresAt": [ahead]}
    return {}


def shown_price(value: Decimal) -> str:
    """A price as answers show it: plain digits, no exponent, no trailing zeros."""
    return format(Decimal(value).normalize(), "f")


def trailing_peak(order: Any) -> Decimal | None:
    """A trailing stop's peak as the service loaded it (`peak_seen`: its own or its class's
    largest mark since it started), else its own; None before it started trailing. Read from
    what is loaded, never by a query: a schema does no I/O."""
    if order.type != OrderType.TRAILING_STOP.value or order.trail_since is None:
        return None
    seen = order.__dict__.get("peak_seen")
    peak = seen if seen is not None else order.peak_price
    return None if peak is None else Decimal(peak)
