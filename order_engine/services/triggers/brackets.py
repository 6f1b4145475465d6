"""OCO brackets: one order, two triggers. Its take-profit waits on the limit index (the market
rising to it, limits.py) and its stop-loss on the stop index (the market falling to it,
stops.py); whichever list finds it, one quote of its whole amount decides which leg is met
(`domain.triggers.oco_leg`: the stop when both are), and the one compare-and-set that moves it
to `routing` records that leg. An order moves once, so the other leg can never execute."""

from __future__ import annotations

from typing import Any

from order_engine.domain.amounts import required_out_atoms
from order_engine.domain.tokens import decimal_text
from order_engine.domain.triggers import BracketLeg, oco_leg, plain, stop_ceiling_atoms
from order_engine.repositories.trigger import Candidate
from order_engine.services.triggers.market import MarketView, Tokens


def confirm_bracket(
    candidate: Candidate, tokens: Tokens, market: MarketView
) -> dict[str, Any] | None:
    """The trigger event's data, naming the leg the order's own quote meets, else None."""
    routed = market.routed(candidate, tokens)
    if routed is None or candidate.limit_price is None or candidate.stop_price is None:
        return None
    token_out, decision = routed.token_out, routed.decision
    decimals = token_out.decimals
    floor = required_out_atoms(candidate.amount_in, candidate.limit_price, None, decimals)
    ceiling = stop_ceiling_atoms(candidate.amount_in, candidate.stop_price, decimals)
    leg = oco_leg(decision.amount_out, floor, ceiling)
    if leg is None:
        return None
    if leg is BracketLeg.STOP_LOSS:
        met: dict[str, Any] = {"triggerPrice": plain(candidate.stop_price)}
        extra: dict[str, Any] = {}
    else:
        met = {"limitPrice": plain(candidate.limit_price)}
        extra = {"requiredAmountOut": decimal_text(token_out.from_atoms(floor))}
    return {"triggered": {leg.value: met}, "leg": leg.value, **extra, **decision.as_event()}
