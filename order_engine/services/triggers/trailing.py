"""Trailing stops: the trigger follows the highest quote seen since the order started, and
fires when the quote falls `trailBps` below that peak.

What is shared and what is per order. An order's quote is its *size class's*: the best venue's
quote for 2^k atoms (2^k <= its amount < 2^(k+1)), per tokenIn, the same for every order of
the pair and class. So the peaks are shared too: a class keeps *marks* (`trailing_peaks`), each
the highest quote seen at or after its instant, their peaks falling as they get newer; an
order's peak is the largest mark at or after its start, or its own starting peak if larger.
Per order remain its start, its trail and its starting peak. While the quote does not rise
above the newest mark, nothing is written; when it does, one mark is written for the whole
class (the marks it makes useless deleted in the same statement), however many orders follow
it. When orders started after the newest mark, one mark covers them all.

Finding the candidates: under a mark of peak p, a quote c fires every trail up to
10,000 × (p − c) / p; the orders that follow that mark with such a trail are one index range
(`ix_orders_trailing_trail`), and a drop of less than the narrowest trail reads nothing. An
order whose starting peak is above every mark it follows waits on the stop index at its level.
An order with an activation price waits on the limit index until its quote reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.domain.triggers import (
    activation_met,
    level_key,
    plain,
    quantized_down,
    shown_level,
    trailing_met,
    widest_trail_met,
)
from order_engine.repositories.stops import Drop, Mark, SizeClass
from order_engine.repositories.trigger import Candidate
from order_engine.services.triggers.market import MarketView, Tokens

# (order id, peak, level, event data) of a trailing stop that starts trailing.
Activation = tuple[Any, Decimal, Decimal, dict[str, Any]]


@dataclass(frozen=True)
class ClassPlan:
    """One size class in one evaluation: its quote, the drops to look for, the mark to write
    (None: none; its peak rose above no mark and no order started after the newest)."""

    price: Fraction | None
    drops: list[Drop]
    mark: Decimal | None
    marks: tuple[Mark, ...] = ()


def plan_class(size: SizeClass, tokens: Tokens, market: MarketView) -> ClassPlan:
    """The class's quote now against its marks: which followers it may fire, whether to mark."""
    pair = tokens.get((size.token_in, size.token_out))
    price = market.class_price(*pair, size.size_class) if pair is not None else None
    if price is None:
        return ClassPlan(None, [], None, size.marks)
    drops, after = [], None
    for mark in size.marks:
        widest = widest_trail_met(price, mark.peak)
        if widest:
            key = (size.token_in, size.token_out, size.size_class)
            drops.append(Drop(*key, after, mark.since, widest))
        after = mark.since
    newest = size.marks[-1] if size.marks else None
    peak = quantized_down(price)
    rose = newest is None or peak > newest.peak
    unmarked = size.last_start is not None and (newest is None or size.last_start > newest.since)
    new_mark = peak if peak > 0 and (rose or unmarked) else None
    return ClassPlan(price, drops, new_mark, size.marks)


def peak_of(candidate: Candidate, marks: tuple[Mark, ...]) -> Decimal:
    """The order's peak: its starting peak or the largest mark at or after its start."""
    start = candidate.trail_since
    followed = [m.peak for m in marks if start is not None and m.since >= start]
    return max([candidate.peak_price or Decimal(0), *followed])


def confirm_trailing(
    candidate: Candidate,
    tokens: Tokens,
    market: MarketView,
    plan: ClassPlan,
) -> dict[str, Any] | None:
    """The trigger event's data if the class's quote is at or under the order's trigger level
    (and the order has a route for its whole amount), else None."""
    peak, trail = peak_of(candidate, plan.marks), candidate.trail_bps
    if plan.price is None or trail is None or peak <= 0:
        return None
    if not trailing_met(plan.price, peak, trail):
        return None
    routed = market.routed(candidate, tokens)
    if routed is None:
        return None
    return {"triggered": shown(trail, peak, plan.price), **routed.decision.as_event()}


def confirm_activation(
    candidate: Candidate, tokens: Tokens, market: MarketView
) -> Activation | None:
    """The order's start if its class's quote reached its activation price, else None."""
    pair = tokens.get((candidate.token_in, candidate.token_out))
    k, trail, activation = candidate.size_class, candidate.trail_bps, candidate.activation_price
    if pair is None or k is None or trail is None or activation is None:
        return None
    price = market.class_price(*pair, k)
    if price is None or not activation_met(price, activation):
        return None
    peak = quantized_down(price)
    data = {"activated": {"activationPrice": plain(activation), **shown(trail, peak, price)}}
    return candidate.id, peak, level_key(peak, trail), data


def shown(trail_bps: int, peak: Decimal, price: Fraction) -> dict[str, Any]:
    """A trailing stop's state as its events show it."""
    return {
        "trailBps": trail_bps,
        "peakPrice": plain(peak),
        "triggerLevel": plain(shown_level(peak, trail_bps)),
        "classPrice": plain(price),
    }
