"""Injected faults: planned per memo by the admin, and congestion windows.

A planned fault is taken by the next send of a transaction carrying that memo, one per send:
`rpc_unavailable` and `stall` refuse the send (nothing accepted), `lost_response` accepts it
and loses the answer (the double-spend trap), `drop` accepts it and never lands it unless it is
re-broadcast, `price_jump` lands it just after a large trade in its own direction. Congestion
raises the chance that an accepted transaction is never included before its blockhash expires.
Every roll is seeded, so a scenario replays identically.
"""

from __future__ import annotations

import random
from collections import deque
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from order_engine.localnet import pools

if TYPE_CHECKING:
    from order_engine.localnet.cluster.bank import Bank, PoolRecord

PRICE_JUMP_BPS = 500
FAULT_KINDS = ("rpc_unavailable", "lost_response", "drop", "price_jump", "stall")
_MILLION = 1_000_000


class Faults:
    """Faults waiting for their memo, and the congestion windows (persisted)."""

    def __init__(self, bank: Bank, expiry_rate: Decimal) -> None:
        self._bank = bank  # its batch persists the congestion windows
        self._expiry_rate = expiry_rate
        self._planned: dict[str, deque[str]] = {}
        self._congestion: list[tuple[int, int, Decimal]] = []

    def load(self, meta: dict[str, Any]) -> None:
        self._congestion = [(a, b, Decimal(r)) for a, b, r in meta.get("congestion", [])]

    def plan(self, memo: str, faults: list[str]) -> int:
        """Queue faults for the next sends of `memo`; returns how many are queued."""
        for fault in faults:
            if fault not in FAULT_KINDS:
                raise ValueError(f"unknown fault {fault!r}; kinds: {', '.join(FAULT_KINDS)}")
        queue = self._planned.setdefault(memo, deque())
        queue.extend(faults)
        return len(queue)

    def take(self, memo: str | None) -> str | None:
        """The next fault planned for `memo`, if any, which this send consumes."""
        if memo is None:
            return None
        queue = self._planned.get(memo)
        if not queue:
            return None
        fault = queue.popleft()
        if not queue:
            del self._planned[memo]
        return fault

    def congest(self, now_ms: int, expiry_rate: Decimal, seconds: int) -> tuple[int, int]:
        window = (now_ms, now_ms + seconds * 1000, expiry_rate)
        self._congestion.append(window)
        self._persist_congestion()
        return window[0], window[1]

    def end_congestion(self, at_ms: int) -> None:
        """Forget the windows over by `at_ms` (at a slot's start)."""
        if any(end < at_ms for _, end, _ in self._congestion):
            self._congestion = [c for c in self._congestion if c[1] >= at_ms]
            self._persist_congestion()

    def expiry_rate(self, at_ms: int) -> Decimal:
        """The chance that a transaction accepted at `at_ms` is never included."""
        rate = self._expiry_rate
        for start, end, congested in self._congestion:
            if start <= at_ms <= end:
                rate = max(rate, congested)
        return rate

    def _persist_congestion(self) -> None:
        self._bank.batch.meta["congestion"] = [[a, b, str(r)] for a, b, r in self._congestion]


def roll(rng: random.Random, rate: Decimal) -> bool:
    """True with probability `rate`, from integers only."""
    return rng.randrange(_MILLION) < int(rate * _MILLION)


def jump_against(bank: Bank, record: PoolRecord, swap_for_y: bool, at_ms: int) -> None:
    """The `price_jump` fault: a large trade in the order's own direction just before it."""
    mid = pools.mid_price(record.pool)
    if mid is None:
        return
    factor = Fraction(10_000 - PRICE_JUMP_BPS if swap_for_y else 10_000 + PRICE_JUMP_BPS)
    bank.set_pool(record, pools.arbitrage(record.pool, mid * factor / 10_000, at_ms // 1000))
