"""Route an order: read the pair's pools once, quote each, and let `decide` choose.

The pool index reads the pools' accounts from the chain once per slot and decodes them into
the exact CPMM / DLMM state (docs/design.md); this fan-out is the only I/O of routing. The choice
itself, one venue or a split across both, is `decide.decide`, a pure function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from order_engine.chain.pools import PoolIndex
from order_engine.domain.errors import ExecutionError, NoRoute
from order_engine.domain.tokens import Token
from order_engine.routing.decide import SPLIT_THRESHOLD_BPS, RouteDecision, decide, quote_pool
from order_engine.routing.in_flight import InFlightSwaps
from order_engine.routing.quote import Quote

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self,
        pools: PoolIndex,
        split_threshold_bps: int = SPLIT_THRESHOLD_BPS,
        now_s: Callable[[], int] = lambda: int(time.time()),
        clock_ms: Callable[[], float] = lambda: time.perf_counter() * 1000,
    ) -> None:
        self.pools = pools
        self.split_threshold_bps = split_threshold_bps
        # The DLMM variable fee decays with time since the pool's last swap (unix seconds).
        self.now_s = now_s
        # Measures each quote's latency (a replay on virtual time passes its own clock).
        self.clock_ms = clock_ms
        # This process's swaps sent and not yet settled (`in_flight.py`).
        self.in_flight = InFlightSwaps()

    def route(
        self, token_in: Token, token_out: Token, amount_in: int, after_ours: bool = False
    ) -> RouteDecision:
        """Quote every pool of the pair and decide; raises when none can fill the order.
        `after_ours`: on the pools as this process's swaps in flight will leave them (an
        execution's route), not as they are (a trigger's or an estimate's)."""
        quotes, errors = self._quote_all(token_in, token_out, amount_in, after_ours)
        decision = decide(token_in, token_out, amount_in, quotes, errors, self.split_threshold_bps)
        # DEBUG: the trigger engine routes every candidate of every evaluation, and an order's
        # route is in its `routing` event anyway.
        log.debug(
            "route %s->%s %s: %s", token_in.symbol, token_out.symbol, amount_in, decision.reason
        )
        return decision

    def _quote_all(
        self, token_in: Token, token_out: Token, amount_in: int, after_ours: bool
    ) -> tuple[list[Quote], dict[str, ExecutionError]]:
        started = self.clock_ms()
        refs = self.pools.pools_for(token_in.mint, token_out.mint)
        if not refs:
            raise NoRoute(f"no venue lists a {token_in.symbol}/{token_out.symbol} pool")
        views = self.pools.views(refs)
        quotes: list[Quote] = []
        errors: dict[str, ExecutionError] = {}
        now_s = self.now_s()
        for view in views:
            if after_ours:
                swap_for_y = bool(view.ref.swaps(token_in.mint, token_out.mint))
                view = self.in_flight.applied(view, swap_for_y, now_s)
            try:
                quote = quote_pool(view, token_in, token_out, amount_in, now_s)
                latency = round(self.clock_ms() - started)
                quotes.append(replace(quote, latency_ms=latency))
            except ExecutionError as exc:
                errors[view.ref.venue] = exc
        return quotes, errors
