"""The priority fee oracle: what a swap should bid per compute unit, from what recent slots'
transactions writing the same accounts paid.

`getRecentPrioritizationFees(accounts)` answers, for each of the node's recent slots, the least
price per CU (µlamports) an included transaction paid, raised to the least paid by those that
write-locked the given accounts (agave `rpc/src/rpc.rs` `get_recent_prioritization_fees`, over
`runtime/src/prioritization_fee_cache.rs`): asking with a swap's writable pool accounts gives a
hot pool's own market, dearer than the chain's. The estimate is a percentile of the last N
slots' values (Solana's docs, "How to Use Priority Fees": estimators take a percentile of recent
fees), raised to a floor; the caller cuts it to the order's cap.

A percentile lags a chain that turns dearer at once (quiet to congested, or a level up): for
as many slots as the window holds old ones, it bids the old market, and a version bid under the
clearing price waits until its blockhash expires (150 slots, a minute). So when the newest
slot's fee is more than `JUMP` times the percentile, the percentile is stale and the bid is
that newest fee. Within one level the slot-to-slot moves are far smaller (the localnet's
demand moves a median 13 % a slot, docs/localnet.md): the rule does not fire there.

One read per slot per process per account set: the answer is cached under the account set and
the slot it was read at, and refreshed once a later slot asks; concurrent callers of one set
wait for one read (single flight, under gevent as under threads).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from order_engine.config import Settings

FeeReader = Callable[[Sequence[str]], list[tuple[int, int]]]
JUMP = 2  # the newest slot's fee over the percentile beyond which the market has moved


def percentile(values: Sequence[int], pct: int) -> int:
    """The nearest-rank `pct`th percentile of `values` (0 for none): the least value with at
    least pct % of the values at or below it."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(math.ceil(pct * len(ordered) / 100), 1)
    return ordered[min(rank, len(ordered)) - 1]


class FeeOracle:
    """Per-process priority fee estimates, per account set, at most one read per slot."""

    def __init__(self, read: FeeReader, pct: int, slots: int, floor: int) -> None:
        self._read = read
        self.pct, self.slots, self.floor = pct, slots, floor
        self._cache: dict[tuple[str, ...], tuple[int, int]] = {}  # set -> (slot read at, fee)
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        self.reads = 0  # node reads made (tests count them)

    @classmethod
    def configured(cls, read: FeeReader, settings: Settings) -> FeeOracle:
        """An oracle reading with `read` (a chain's `recent_prioritization_fees`) as the
        settings say (PRIORITY_FEE_PERCENTILE, _SLOTS, _FLOOR_MICRO_LAMPORTS)."""
        return cls(
            read,
            settings.priority_fee_percentile,
            settings.priority_fee_slots,
            settings.priority_fee_floor_micro_lamports,
        )

    def price(self, accounts: Sequence[str], slot: int) -> int:
        """µlamports per CU to bid for a transaction writing `accounts`, as of `slot`: the
        configured percentile of the last `slots` slots' fees for them (the newest slot's fee
        when that is over `JUMP` times it), at least the floor."""
        key = tuple(sorted(set(accounts)))
        cached = self._cache.get(key)
        if cached is not None and cached[0] >= slot:
            return cached[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] >= slot:
                return cached[1]
            fees = sorted(self._read(key))  # by slot: a node need not answer in order
            self.reads += 1
            recent = [fee for _slot, fee in fees[-self.slots :]]
            price = percentile(recent, self.pct)
            if recent and recent[-1] > JUMP * price:
                price = recent[-1]
            price = max(price, self.floor)
            self._cache[key] = (slot, price)
            return price
