"""Landing: what lands in each slot, when, and in what order. The cluster's slot loop.

An accepted transaction waits in a queue ordered by its landing instant (the sending instant
plus a seeded latency), ties broken by arrival. `advance` (called before every answer) does
all that is due by now, in time order:

* at each slot boundary passed, every pool is arbitraged to the market at that instant, and
  accepted transactions whose blockhash has expired are forgotten (they can no longer land);
* each transaction whose instant has come lands: the pools it touches are first arbitraged to
  the market at that instant (and moved against it, under a `price_jump` fault), then it runs
  atomically (`Bank.execute`); a failed one lands with its `err` and pays its fee;
* what changed is written to SQLite in one commit, before any caller can report a landing.

A transaction not included by its blockhash's last valid block height never lands: a `drop`
fault or a congestion roll (it stays pending, and only a re-broadcast can bring it in), or a
landing latency longer than the blockhash's lifetime. This module is the one place that decides
what lands in a slot and in what order; a fee market, compute limits per block or bundles
change `schedule` and `_land_until`, not the callers.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from solders.transaction import VersionedTransaction

from order_engine.localnet import execution
from order_engine.localnet.clock import slot_at, slot_start_ms
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.faults import Faults, jump_against
from order_engine.localnet.cluster.ledger import Ledger, LedgerEntry
from order_engine.localnet.execution.state import Overlay

DROPPED = ("drop", "congestion")  # accepted, but no leader includes them


@dataclass
class Pending:
    """An accepted transaction waiting for its landing instant."""

    signature: str
    tx: VersionedTransaction
    instructions: list[Any] | None  # None: undecodable, lands failed
    decode_error: Any
    memo: str | None
    last_valid: int
    land_at_ms: int
    fault: str | None  # drop | price_jump | congestion


class Landing:
    """The queue of accepted transactions and the slot loop that lands them."""

    def __init__(
        self, bank: Bank, ledger: Ledger, faults: Faults, clock: Any, slot_ms: int, now_ms: int
    ) -> None:
        self._bank = bank
        self._ledger = ledger
        self._faults = faults
        self._clock = clock
        self._slot_ms = slot_ms
        self.pending: dict[str, Pending] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._queue_seq = 0
        self._sends: dict[str, int] = {}  # sends of each pending signature so far
        self._tick_slot = slot_at(now_ms, slot_ms)  # the last slot whose start was handled

    def schedule(self, pending: Pending) -> None:
        self.pending[pending.signature] = pending
        self._queue_seq += 1
        heapq.heappush(self._queue, (pending.land_at_ms, self._queue_seq, pending.signature))

    def count_send(self, signature: str) -> int:
        """How many times this signature was sent before, while it has not landed nor expired;
        each send rolls its own chances."""
        count = self._sends.get(signature, 0)
        self._sends[signature] = count + 1
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
            tick_ms = slot_start_ms(current, self._slot_ms)
            self._land_until(tick_ms - 1)
            self._tick(tick_ms)
            self._tick_slot = current
        self._land_until(now_ms)
        self._bank.flush()

    def _tick(self, at_ms: int) -> None:
        for record in self._bank.records.values():
            self._bank.catch_up(record, at_ms)
        # Forget accepted transactions that can no longer land.
        current = slot_at(at_ms, self._slot_ms)
        expired = [s for s, p in self.pending.items() if p.last_valid < current]
        for signature in expired:
            del self.pending[signature]
            self._sends.pop(signature, None)
        self._faults.end_congestion(at_ms)

    def _land_until(self, until_ms: int) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until_ms:
            land_at_ms, _, signature = heapq.heappop(queue)
            pending = self.pending.get(signature)
            if pending is None or pending.land_at_ms != land_at_ms:
                continue
            if pending.fault in DROPPED:
                continue  # stays in `pending` until it expires, unless re-broadcast (`lost`)
            del self.pending[signature]
            self._sends.pop(signature, None)
            if slot_at(land_at_ms, self._slot_ms) > pending.last_valid:
                continue  # not included before its blockhash expired: never lands
            self._land(pending)

    def _land(self, pending: Pending) -> None:
        land_ms = pending.land_at_ms
        tx = pending.tx
        payer = str(tx.message.account_keys[0])
        self._bank.fund_wallet(payer)
        result = self._run(pending, payer)
        if result.err == "InsufficientFundsForFee":
            return  # not included
        keys = [str(key) for key in tx.message.account_keys]
        before = self._bank.balances(keys, payer)
        self._bank.apply(result.overlay)
        after = self._bank.balances(keys, payer)
        entry = LedgerEntry(
            signature=pending.signature,
            slot=slot_at(land_ms, self._slot_ms),
            err=result.err,
            fee=result.fee,
            memo=pending.memo,
            payer=payer,
            input_mint=result.input_mint,
            output_mint=result.output_mint,
            amount_in=result.amount_in,
            amount_out=result.amount_out if result.err is None else 0,
            legs=[leg.to_json() for leg in result.legs],
            landed_ms=land_ms,
            balances={"keys": keys, "pre": before, "post": after},
        )
        self._ledger.append(entry)

    def _run(self, pending: Pending, payer: str) -> execution.ExecutionResult:
        """Execute at the landing instant, against pools caught up to that instant."""
        tx, land_ms = pending.tx, pending.land_at_ms
        if pending.instructions is None:
            # Undecodable: it fails at its first bad instruction, paying the signatures' fee.
            fee, _ = execution.fee_for(len(tx.signatures), [])
            overlay = Overlay(self._bank)
            overlay.lamports[payer] = self._bank.wallet_lamports(payer) - fee
            err = {"InstructionError": [pending.decode_error, "InvalidInstructionData"]}
            return execution.ExecutionResult(err, [], 0, fee, [], overlay)
        touched = self._bank.touched(pending.instructions)
        for record, _swap_for_y in touched:
            self._bank.catch_up(record, land_ms)
        if pending.fault == "price_jump":
            for record, swap_for_y in touched:
                jump_against(self._bank, record, swap_for_y, land_ms)
        return self._bank.execute(tx, pending.instructions, land_ms)
