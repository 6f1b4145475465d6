"""This process's own swaps on their way to the chain, so that the next order on the same pool
is quoted on the state they will leave.

Orders that arrive together are routed on the same slot's pool state. Without this, two large
sells of one pool in one slot are each quoted as if alone; the first to land moves the price,
and the second falls below its minimum out (a slippage failure, or a bundle dropped) although
the engine knew of both. So every swap an execution routes is kept here from its route (before
any I/O: a burst's orders routed one after another see each other) until its task learns how
it ended (landed, failed, or can no longer land), and an execution's routing quotes each pool
after the swaps in flight on it in the order's own direction (`Router.route(...,
after_ours=True)`), as one swap of their total: a quote that holds in whatever order they
land. Swaps the other way are left out (landing first they only help the order), and one swap
of the total costs the same whether one or three hundred are in flight; it differs from running
them one by one only in fee rounding, far inside any slippage allowance.

Between a swap landing and its task learning of it (about a slot), a fresh state already holds
it and it is counted twice: the quote is a little worse than the chain's, never better, so the
minimum it sets still holds. The trigger engine does not apply them: a trigger watches the
market, not the engine's own queue. Only this process's swaps are known; other worker processes
have their own. An entry whose task never settles it goes with its process, or after
`MAX_AGE_S`, when its blockhash has long expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from order_engine.chain.pools import PoolView
from order_engine.venues.math import VenueMathError

MAX_AGE_S = 90.0  # a blockhash lives ~60-90 s: nothing older can still land


@dataclass(frozen=True)
class InFlightSwap:
    """One leg of a sent swap: the pool, the direction and what it sells."""

    pool_id: str
    swap_for_y: bool
    amount_in: int


class InFlightSwaps:
    """This process's sent and unsettled swaps, and their total per pool and direction."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sent: dict[str, tuple[float, tuple[InFlightSwap, ...]]] = {}  # oldest first
        self._totals: dict[tuple[str, bool], int] = {}
        self._lock = threading.Lock()

    def add(self, key: str, legs: Iterable[InFlightSwap]) -> None:
        """`key`'s swap was sent (a new version replaces the one before)."""
        legs = tuple(legs)
        with self._lock:
            self._remove(key)  # re-inserted last: the newest
            self._sent[key] = (self.clock(), legs)
            for leg in legs:
                side = (leg.pool_id, leg.swap_for_y)
                self._totals[side] = self._totals.get(side, 0) + leg.amount_in

    @contextmanager
    def holding(self, key: str, legs: Iterable[InFlightSwap]) -> Iterator[None]:
        """`key`'s swap in flight for as long as the block runs: added, then settled however
        the block ends."""
        self.add(key, legs)
        try:
            yield
        finally:
            self.settle(key)

    def settle(self, key: str) -> None:
        """`key`'s swap landed, failed or can no longer land: no longer in flight."""
        with self._lock:
            self._remove(key)

    def selling(self, pool_id: str, swap_for_y: bool) -> int:
        """What the swaps in flight on `pool_id` sell in that direction, in atoms (entries
        past `MAX_AGE_S` dropped first)."""
        with self._lock:
            oldest = self.clock() - MAX_AGE_S
            while self._sent:
                key, (at, _) = next(iter(self._sent.items()))
                if at >= oldest:
                    break
                self._remove(key)
            return self._totals.get((pool_id, swap_for_y), 0)

    def __len__(self) -> int:
        return len(self._sent)

    def _remove(self, key: str) -> None:
        _, legs = self._sent.pop(key, (0.0, ()))
        for leg in legs:
            side = (leg.pool_id, leg.swap_for_y)
            left = self._totals[side] - leg.amount_in
            if left:
                self._totals[side] = left
            else:
                del self._totals[side]

    def applied(self, view: PoolView, swap_for_y: bool, now_s: int) -> PoolView:
        """`view` as it will be once this process's swaps in flight on it in this direction
        have run."""
        amount = self.selling(view.ref.address, swap_for_y)
        if not amount:
            return view
        try:
            if view.cpmm is not None:
                return replace(view, cpmm=view.cpmm.swap_exact_in(amount, swap_for_y).pool)
            if view.dlmm is not None:
                at = max(now_s, view.dlmm.volatility.last_update_timestamp)
                return replace(view, dlmm=view.dlmm.swap_exact_in(amount, swap_for_y, at).pool)
        except VenueMathError:
            pass  # more than the pool can fill: quoted as it is (the chain will refuse one)
        return view
