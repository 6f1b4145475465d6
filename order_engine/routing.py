"""Route an order: quote every venue at once and pick the best net output for the client."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from order_engine.tokens import Token
from order_engine.venues.base import Quote, Venue
from order_engine.venues.errors import ExecutionError, NoRoute, QuoteUnavailable

log = logging.getLogger(__name__)

# Quotes are network waits; one small pool per process serves every order's fan-out.
_quote_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="quote")


@dataclass(frozen=True)
class RouteDecision:
    chosen: Quote
    quotes: Sequence[Quote]
    failures: dict[str, dict[str, object]]
    reason: str

    def as_event(self) -> dict[str, object]:
        return {
            "quotes": [q.as_event() for q in self.quotes],
            "unavailable": self.failures,
            "decision": {
                "dex": self.chosen.dex,
                "poolId": self.chosen.pool_id,
                "reason": self.reason,
            },
        }


class Router:
    def __init__(self, venues: Sequence[Venue]) -> None:
        self.venues = list(venues)

    def route(self, token_in: Token, token_out: Token, amount_in: int) -> RouteDecision:
        """Quote all venues concurrently; the larger amount out wins (fees and impact are in it).

        Raises the most telling error when no venue can quote: a retryable one if any venue
        failed for a transient reason, else NoRoute / NoLiquidity.
        """
        futures = {
            venue.name: _quote_pool.submit(venue.quote, token_in, token_out, amount_in)
            for venue in self.venues
        }
        quotes: list[Quote] = []
        errors: dict[str, ExecutionError] = {}
        for name, future in futures.items():
            try:
                quotes.append(future.result())
            except ExecutionError as exc:
                errors[name] = exc
        if not quotes:
            raise _no_quote_error(errors)
        ranked = sorted(quotes, key=lambda q: (-q.amount_out, q.dex))
        best = ranked[0]
        reason = _reason(best, ranked[1:])
        log.info("route %s->%s %s: %s", token_in.symbol, token_out.symbol, amount_in, reason)
        return RouteDecision(best, quotes, {k: v.as_dict() for k, v in errors.items()}, reason)


def _reason(best: Quote, others: Sequence[Quote]) -> str:
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
