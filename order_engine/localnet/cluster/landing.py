"""Landing: what lands in each slot, when, and in what order. The cluster's slot loop.

An accepted transaction or bundle (`sent.Pending`) waits in a queue ordered by the instant it is
ready (the sending instant plus a seeded latency), ties broken by arrival. `advance` (called
before every answer) does all that is due by now, in time order, slot by slot:

* in a quiet slot (`congestion.Congestion`), each one lands at its own instant, as it is ready:
  nothing competes for the block. A stretch of quiet slots is passed in one step, with one tick
  at its end, so a quiet chain costs nothing per slot;
* in a contested slot, what became ready during it competes in the slot's auction with the
  level's background demand, once the slot is over; what is included lands, in block order, at
  its instant or the slot's start, and what does not fit stays ready for the next slot;
* at each slot boundary passed, every pool is arbitraged to the market at that instant, the
  finished slots' fees are recorded, and what can no longer land (its blockhash expired) is
  forgotten (a bundle's record says it failed);
* what changed is written to SQLite in one commit, before any caller can report a landing.

Running one transaction or bundle is `inclusion.Inclusion`'s. A transaction not included by
its blockhash's last valid block height never lands: a `drop` fault or a congestion roll (it
stays pending, and only a re-broadcast can bring it in), a landing latency longer than the
blockhash's lifetime, or, at a contested level, a price too low to win block space in time.
"""

from __future__ import annotations

import heapq
from typing import Any

from order_engine.localnet.clock import slot_at, slot_start_ms
from order_engine.localnet.cluster.auction import Offer
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.bundles import BundleBook
from order_engine.localnet.cluster.congestion import Congestion
from order_engine.localnet.cluster.faults import Faults
from order_engine.localnet.cluster.fees import FeeHistory
from order_engine.localnet.cluster.inclusion import Inclusion
from order_engine.localnet.cluster.sent import Pending, Recency

DROPPED = ("drop", "congestion")  # accepted, but no leader includes them


class Landing:
    """The queue of accepted transactions and bundles, and the slot loop that lands them."""

    def __init__(
        self,
        bank: Bank,
        faults: Faults,
        congestion: Congestion,
        fees: FeeHistory,
        inclusion: Inclusion,
        bundles: BundleBook,
        recency: Recency,
        clock: Any,
        slot_ms: int,
    ) -> None:
        self._bank = bank
        self._faults = faults
        self._congestion = congestion
        self._fees = fees
        self._inclusion = inclusion
        self._bundles = bundles
        self._recency = recency
        self._clock = clock
        self._slot_ms = slot_ms
        self.pending: dict[str, Pending] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._ready: list[Pending] = []  # ready in a contested slot, not included yet
        self._seq = 0
        self._sends: dict[str, int] = {}  # sends of each pending key so far
        self._tick_slot = slot_at(clock.now_ms(), slot_ms)  # the last slot whose start was handled

    def schedule(self, pending: Pending) -> None:
        self._seq += 1
        pending.seq = self._seq
        self.pending[pending.key] = pending
        heapq.heappush(self._queue, (pending.land_at_ms, self._seq, pending.key))

    def count_send(self, key: str) -> int:
        """How many times this was sent before, while it has not landed nor expired; each send
        rolls its own chances."""
        count = self._sends.get(key, 0)
        self._sends[key] = count + 1
        return count

    def lost(self, pending: Pending) -> bool:
        """Dropped (a `drop` fault or a congestion roll) and past the instant it would have
        landed: no leader has it, and only a re-broadcast can still bring it in."""
        return pending.fault in DROPPED and self._clock.now_ms() >= pending.land_at_ms

    def advance(self) -> None:
        """Do everything due by now (see the module docstring), then persist it."""
        now_ms = self._clock.now_ms()
        current = slot_at(now_ms, self._slot_ms)
        if current > self._tick_slot:
            self._pass(current)
        if not self._congestion.contested(current):
            self._land_until(now_ms)
        self._bank.flush()

    def _pass(self, current: int) -> None:
        """Finish every slot before `current`: quiet stretches in one step, contested slots one
        by one, each followed by its tick."""
        slot = self._tick_slot
        while slot < current:
            if self._congestion.contested(slot):
                self._auction(slot)
                end = slot + 1
            else:
                end = self._congestion.quiet_until(slot, current)
                self._land_ready(slot)
                self._land_until(self._start(end) - 1)
            self._fees.finish(end)
            self._tick(self._start(end))
            slot = end
        self._tick_slot = current

    def _start(self, slot: int) -> int:
        return slot_start_ms(slot, self._slot_ms)

    def _due(self, until_ms: int) -> list[Pending]:
        """Pop what is ready by `until_ms` from the queue, in time order; dropped ones stay in
        `pending` until they expire, unless re-broadcast (`lost`)."""
        due = []
        queue = self._queue
        while queue and queue[0][0] <= until_ms:
            land_at_ms, _, key = heapq.heappop(queue)
            pending = self.pending.get(key)
            if pending is None or pending.land_at_ms != land_at_ms or pending.fault in DROPPED:
                continue
            due.append(pending)
        return due

    def _land_until(self, until_ms: int) -> None:
        """Quiet: each lands at its own instant, if its blockhash still lets it."""
        for pending in self._due(until_ms):
            self._forget(pending.key)
            slot = slot_at(pending.land_at_ms, self._slot_ms)
            if slot > pending.last_valid:
                self._expired(pending)  # not included before its blockhash expired
                continue
            self._inclusion.land(pending, pending.land_at_ms, slot)

    def _land_ready(self, slot: int) -> None:
        """A contested stretch is over: what still waits lands at the quiet slot's start."""
        ready, self._ready = self._ready, []
        for pending in ready:
            if self.pending.get(pending.key) is pending and pending.last_valid >= slot:
                self._forget(pending.key)
                self._inclusion.land(pending, self._start(slot), slot)

    def _auction(self, slot: int) -> None:
        """A contested slot is over: pack its block from everything ready by its end."""
        self._ready.extend(self._due(self._start(slot + 1) - 1))
        waiting = [p for p in self._ready if self.pending.get(p.key) is p and p.last_valid >= slot]
        offers = [Offer(p.key, p.price, p.units, p.writable, p.seq) for p in waiting]
        chosen = self._congestion.auction(self._bank.seed, slot, offers)
        for offer in chosen:
            pending = self.pending[offer.key]
            self._forget(offer.key)
            self._inclusion.land(pending, max(pending.land_at_ms, self._start(slot)), slot)
        self._ready = [p for p in waiting if p.key in self.pending]

    def _forget(self, key: str) -> None:
        del self.pending[key]
        self._sends.pop(key, None)

    def _expired(self, pending: Pending) -> None:
        if pending.bundle is not None:
            self._bundles.failed(pending.bundle, "BlockhashNotFound")

    def _tick(self, at_ms: int) -> None:
        for record in self._bank.records.values():
            self._bank.catch_up(record, at_ms)
        # Forget what can no longer land: its blockhash expired, or its durable nonce moved.
        current = slot_at(at_ms, self._slot_ms)
        for key, pending in list(self.pending.items()):
            if pending.last_valid < current or (
                pending.sent[0].nonce is not None and not self._recency.nonce_holds(pending.sent[0])
            ):
                self._forget(key)
                self._expired(pending)
        self._faults.end_congestion(at_ms)
