"""A swap's amounts: the least it may pay out (the client's slippage, its limit or maximum
price, spread over a split route's legs) and what a confirmed one paid. Pure functions.

Every minimum rounds in the client's favour: a slippage minimum rounds down from the quote
(the chain may pay that much or more), a price floor rounds up (never a fill below the limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any, Protocol

from order_engine.domain.tokens import Token
from order_engine.domain.triggers import BracketLeg

BPS = 10_000


class PricedOrder(Protocol):
    """What the minimums read of an order (`models.Order` is one), so that this module needs
    nothing above the domain."""

    @property
    def trigger_leg(self) -> str | None: ...
    @property
    def amount_in(self) -> Decimal: ...
    @property
    def slippage_bps(self) -> int: ...
    @property
    def limit_price(self) -> Decimal | None: ...
    @property
    def max_price(self) -> Decimal | None: ...
    @property
    def route(self) -> dict[str, Any] | None: ...
    @property
    def min_amount_out(self) -> Decimal | None: ...


def min_amount_out(quoted_out: int, slippage_bps: int) -> int:
    """floor(quotedOut × (10000 − slippageBps) / 10000), the least the swap may pay out."""
    return quoted_out * (BPS - slippage_bps) // BPS


def leg_minimums(total_minimum: int, leg_outputs: list[int]) -> list[int]:
    """Spread the order's minimum over its legs in proportion to their quotes, summing to it
    exactly, so the legs together never pay less than the client's minimum."""
    quoted = sum(leg_outputs)
    minimums = [total_minimum * out // quoted for out in leg_outputs[:-1]] if quoted else []
    return [*minimums, total_minimum - sum(minimums)]


def ceil_div_fraction(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def required_out_atoms(
    amount_in: Decimal, limit_price: Decimal | None, max_price: Decimal | None, decimals_out: int
) -> int:
    """The least output, in atoms, that honours the order's price: ceil(amount × limitPrice)
    for a limit, ceil(amount / maxPrice) for a sniper with a maximum price, else 0."""
    scale = 10**decimals_out
    if limit_price is not None:
        return ceil_div_fraction(Fraction(amount_in) * Fraction(limit_price) * scale)
    if max_price is not None:
        return ceil_div_fraction(Fraction(amount_in) / Fraction(max_price) * scale)
    return 0


def price_floor(order: PricedOrder, token_out: Token) -> int:
    """The least output a limit or sniper order accepts (0 for a market order). An OCO
    bracket's `limit_price` is its take-profit: the floor of that leg only, for its stop-loss
    leg, like a stop, promises to get out rather than a price (0)."""
    if order.trigger_leg == BracketLeg.STOP_LOSS:
        return 0
    return required_out_atoms(
        order.amount_in, order.limit_price, order.max_price, token_out.decimals
    )


def minimum_out(order: PricedOrder, token_out: Token, quoted_out: int) -> int:
    """The least this attempt's swap may pay: from its quote and the order's slippage, but
    never below the order's price (a limit or a sniper's maximum) nor, after a slippage
    re-quote, below the minimum the client was promised before it."""
    minimum = min_amount_out(quoted_out, order.slippage_bps)
    floor = price_floor(order, token_out)
    if floor:
        # That price, not an earlier quote, is what the client was promised.
        return max(minimum, floor)
    if (order.route or {}).get("requoted") and order.min_amount_out is not None:
        minimum = max(minimum, token_out.to_atoms(order.min_amount_out))
    return minimum


@dataclass(frozen=True)
class Fill:
    """What a confirmed swap paid, in token units, and how far it landed from its quote."""

    amount_in: Decimal
    amount_out: Decimal
    price: Decimal  # tokenOut per tokenIn, 12 decimals, rounded down
    slippage_bps: Decimal  # (quoted − received) / quoted, two decimals; negative: better

    @classmethod
    def of(
        cls, token_in: Token, token_out: Token, amount_in: int, received: int, quoted: int
    ) -> Fill:
        amount_out = token_out.from_atoms(received)
        spent = token_in.from_atoms(amount_in)
        price = (amount_out / spent).quantize(Decimal("1e-12"), rounding=ROUND_DOWN)
        slippage = Decimal((quoted - received) * BPS) / Decimal(max(quoted, 1))
        return cls(spent, amount_out, price, slippage.quantize(Decimal("0.01")))
