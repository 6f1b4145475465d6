"""Stops: they wait for the market to fall to them, and so do a bracket's stop-loss and a
trailing stop at the level it started from.

A stop can fire only if its quote can be at or below its trigger price, so what bounds a pair's
quotes from below finds the candidates. Outputs are concave in the input, so the average price
of an amount is a lower bound of every smaller amount's: orders of size class k (2^k <= amount
< 2^(k+1) atoms) can get no less per tokenIn than the best venue pays for 2^(k+1) atoms, the
next class's quote. One indexed range query per class (`stop_price` at or above that floor)
finds them; those far below the market are never read, let alone quoted. Each candidate is then
quoted exactly for its whole amount (its routing), and fires when that quote pays at most
floor(amount × triggerPrice).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from order_engine.domain.tokens import decimal_text
from order_engine.domain.triggers import plain, quantized_down, stop_ceiling_atoms, stop_met
from order_engine.repositories.stops import Floor, SizeClass
from order_engine.repositories.trigger import Candidate
from order_engine.services.triggers.market import MarketView, Tokens


def floor_of(size: SizeClass, tokens: Tokens, market: MarketView) -> Floor | None:
    """The class's floor: the least its orders' quotes can be now (0 when the next class's
    amount cannot be quoted: every order of the class is then a candidate). None if the pair
    is not listed."""
    pair = tokens.get((size.token_in, size.token_out))
    if pair is None:
        return None
    below = market.class_price(*pair, size.size_class + 1)
    bound = quantized_down(below) if below is not None else Decimal(0)
    return Floor(size.token_in, size.token_out, size.size_class, bound)


def confirm_stop(candidate: Candidate, tokens: Tokens, market: MarketView) -> dict[str, Any] | None:
    """The trigger event's data if the order's own quote is at or under its price, else None."""
    routed = market.routed(candidate, tokens)
    if routed is None or candidate.stop_price is None:
        return None
    token_out, decision = routed.token_out, routed.decision
    ceiling = stop_ceiling_atoms(candidate.amount_in, candidate.stop_price, token_out.decimals)
    if not stop_met(decision.amount_out, ceiling):
        return None
    return {
        "triggered": {"triggerPrice": plain(candidate.stop_price)},
        "ceilingAmountOut": decimal_text(token_out.from_atoms(ceiling)),
        **decision.as_event(),
    }
