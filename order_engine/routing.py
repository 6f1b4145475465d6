"""Route an order: quote every venue at once, then take the best net output for the client —
one venue, or a split across both when it beats the best single venue by more than a threshold.

Quotes already include each venue's fee and price impact, so "best" is simply the most
`token_out` for the client. Outputs are concave in the input (constant product) or piecewise
concave (DLMM bins), so the best split is where the two marginal outputs meet; `venues.math.split`
finds it exactly on the quoted pool states (research/dex.md §6.7).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from order_engine.tokens import Token
from order_engine.venues.base import Quote, Venue
from order_engine.venues.errors import ExecutionError, NoRoute, QuoteUnavailable
from order_engine.venues.math import VenueMathError
from order_engine.venues.math.split import choose_allocation

log = logging.getLogger(__name__)

# A split costs a second instruction and more compute units: only worth it above this gain.
SPLIT_THRESHOLD_BPS = 3
# Quotes are network waits; one pool per process serves every order's fan-out.
_quote_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="quote")


@dataclass(frozen=True)
class Leg:
    dex: str
    pool_id: str
    amount_in: int
    amount_out: int


@dataclass(frozen=True)
class RouteDecision:
    legs: Sequence[Leg]
    quotes: Sequence[Quote]
    failures: dict[str, dict[str, object]]
    reason: str
    token_in: Token
    token_out: Token

    @property
    def amount_out(self) -> int:
        return sum(leg.amount_out for leg in self.legs)

    @property
    def dex(self) -> str:
        return "+".join(leg.dex for leg in self.legs)

    def as_event(self) -> dict[str, Any]:
        total_in = sum(leg.amount_in for leg in self.legs)
        return {
            "quotes": [q.as_event() for q in self.quotes],
            "unavailable": self.failures,
            "decision": {
                "dex": self.dex,
                "amountOut": str(self.token_out.from_atoms(self.amount_out)),
                "legs": [
                    {
                        "dex": leg.dex,
                        "poolId": leg.pool_id,
                        "amountIn": str(self.token_in.from_atoms(leg.amount_in)),
                        "amountOut": str(self.token_out.from_atoms(leg.amount_out)),
                        "percent": str(
                            (Decimal(leg.amount_in * 100) / total_in).quantize(Decimal("0.01"))
                        ),
                    }
                    for leg in self.legs
                ],
                "reason": self.reason,
            },
        }


class Router:
    def __init__(
        self,
        venues: Sequence[Venue],
        split_threshold_bps: int = SPLIT_THRESHOLD_BPS,
        concurrent: bool = True,
    ) -> None:
        self.venues = list(venues)
        self.split_threshold_bps = split_threshold_bps
        # Replays on virtual time quote one venue after the other, so the clock is advanced in
        # a fixed order and the run is reproducible.
        self.concurrent = concurrent

    def route(self, token_in: Token, token_out: Token, amount_in: int) -> RouteDecision:
        """Quote all venues concurrently and decide; raises when no venue can quote."""
        quotes, errors = self._quote_all(token_in, token_out, amount_in)
        if not quotes:
            raise _no_quote_error(errors)
        ranked = sorted(quotes, key=lambda q: (-q.amount_out, q.dex))
        best = ranked[0]
        legs = [Leg(best.dex, best.pool_id, amount_in, best.amount_out)]
        reason = _single_reason(best, ranked[1:])
        split = self._split(ranked, amount_in)
        if split is not None:
            legs, reason = split
        failures = {name: error.as_dict() for name, error in errors.items()}
        decision = RouteDecision(legs, quotes, failures, reason, token_in, token_out)
        log.info("route %s->%s %s: %s", token_in.symbol, token_out.symbol, amount_in, reason)
        return decision

    def _quote_all(
        self, token_in: Token, token_out: Token, amount_in: int
    ) -> tuple[list[Quote], dict[str, ExecutionError]]:
        if self.concurrent:
            futures = {
                venue.name: _quote_pool.submit(venue.quote, token_in, token_out, amount_in)
                for venue in self.venues
            }
            calls: dict[str, Callable[[], Quote]] = {
                name: future.result for name, future in futures.items()
            }
        else:
            calls = {
                venue.name: partial(venue.quote, token_in, token_out, amount_in)
                for venue in self.venues
            }
        quotes: list[Quote] = []
        errors: dict[str, ExecutionError] = {}
        for name, call in calls.items():
            try:
                quotes.append(call())
            except ExecutionError as exc:
                errors[name] = exc
        return quotes, errors

    def _split(self, ranked: list[Quote], amount_in: int) -> tuple[list[Leg], str] | None:
        """Two legs when splitting beats the best venue by more than the threshold."""
        if len(ranked) < 2 or any(q.curve is None for q in ranked[:2]):
            return None
        best, other = ranked[0], ranked[1]
        # A split can gain at most about the best venue's own price impact; skip the search
        # when that is below the threshold (most small orders).
        if best.price_impact_bps < self.split_threshold_bps:
            return None
        try:
            allocation = choose_allocation(
                best.curve, other.curve, amount_in, self.split_threshold_bps
            )
        except VenueMathError:
            return None
        if not allocation.uses_both_venues:
            return None
        out_best = best.curve(allocation.amount_first) or 0
        out_other = allocation.amount_out - out_best
        gain_bps = (allocation.amount_out - best.amount_out) * 10_000 / best.amount_out
        legs = [
            Leg(best.dex, best.pool_id, allocation.amount_first, out_best),
            Leg(other.dex, other.pool_id, allocation.amount_second, out_other),
        ]
        share = allocation.amount_first * 100 / amount_in
        reason = (
            f"split {share:.1f}% {best.dex} / {100 - share:.1f}% {other.dex} pays "
            f"{allocation.amount_out} atoms, +{gain_bps:.2f} bps over {best.dex} alone"
        )
        return legs, reason


def _single_reason(best: Quote, others: Sequence[Quote]) -> str:
    if not others:
        return f"{best.dex} is the only venue quoting this pair"
    runner_up = others[0]
    edge_bps = (best.amount_out - runner_up.amount_out) * 10_000 / max(runner_up.amount_out, 1)
    return (
        f"{best.dex} pays {best.amount_out} atoms vs {runner_up.dex} {runner_up.amount_out}"
        f" (+{edge_bps:.2f} bps net of fees and price impact)"
    )


def _no_quote_error(errors: dict[str, ExecutionError]) -> ExecutionError:
    transient = [e for e in errors.values() if e.retryable]
    if transient:
        return QuoteUnavailable("; ".join(e.message for e in transient))
    non_route = [e for e in errors.values() if not isinstance(e, NoRoute)]
    if non_route:
        return non_route[0]
    return NoRoute("no venue lists this pair")
