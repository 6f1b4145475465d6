"""Inclusion: a transaction or a bundle chosen for a slot runs and is written to the ledger.

A transaction first checks it may still land (its blockhash, or its durable nonce, which
another version may have advanced: then it is dropped, never processed), the pools it touches
catch up with the market at its instant (and jump against it under a `price_jump` fault), the
searcher may sandwich it if it is public, then it runs: failed or not, it lands and pays its fee
(`Bank.execute`), and what it paid is recorded with the slot's fees. A bundle runs its
transactions in order, each over the state the previous left (stacked overlays); if any fails,
none lands and nothing is charged, and the bundle is marked failed; else all land, and its tip
is recorded for the tip floor.
"""

from __future__ import annotations

from typing import Any

from order_engine.localnet import execution
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.blockhashes import Blockhashes
from order_engine.localnet.cluster.bundles import BundleBook
from order_engine.localnet.cluster.faults import jump_against
from order_engine.localnet.cluster.fees import FeeHistory
from order_engine.localnet.cluster.ledger import Ledger, LedgerEntry
from order_engine.localnet.cluster.searcher import Searcher
from order_engine.localnet.cluster.sent import Pending, Recency, Sent
from order_engine.localnet.execution import metering
from order_engine.localnet.execution.state import Overlay, State

NOT_INCLUDED = "InsufficientFundsForFee"  # a fee payer that cannot pay: never in a block


class Inclusion:
    """Runs what a slot includes against the bank and records it."""

    def __init__(
        self,
        bank: Bank,
        ledger: Ledger,
        blockhashes: Blockhashes,
        recency: Recency,
        fees: FeeHistory,
        bundles: BundleBook,
        searcher: Searcher,
    ) -> None:
        self._bank = bank
        self._ledger = ledger
        self._blockhashes = blockhashes
        self._recency = recency
        self._fees = fees
        self._bundles = bundles
        self._searcher = searcher

    def land(self, pending: Pending, at_ms: int, slot: int) -> bool:
        """Run it at `at_ms` in `slot`; whether it landed."""
        if pending.bundle is not None:
            return self._land_bundle(pending, at_ms, slot)
        sent = pending.sent[0]
        if sent.signature in self._ledger:
            return False  # processed already (in a bundle): a signature lands once
        if sent.nonce is not None and not self._recency.nonce_holds(sent):
            return False  # its nonce moved on: no longer a valid transaction
        self._prepare(sent, pending.fault, at_ms)
        plans = None
        if pending.public and self._searcher.rate:
            plans = self._searcher.front_run(sent, at_ms)
        result = self._run(sent, at_ms, slot)
        if plans is not None and result.err is not None:
            self._searcher.undo(plans)  # it would fail sandwiched: the searcher lets it be
            plans = None
            result = self._run(sent, at_ms, slot)
        if result.err == NOT_INCLUDED:
            return False
        self._commit(sent, result, at_ms, slot)
        if plans is not None:
            self._searcher.back_run(plans, result, sent.signature, slot, at_ms)
        return True

    def _prepare(self, sent: Sent, fault: str | None, at_ms: int) -> None:
        """The payer funded on first sight; its pools caught up with the market at `at_ms`."""
        self._bank.fund_wallet(sent.payer)
        touched = self._bank.touched(sent.instructions or [])
        for record, _ in touched:
            self._bank.catch_up(record, at_ms)
        if fault == "price_jump":
            for record, swap_for_y in touched:
                jump_against(self._bank, record, swap_for_y, at_ms)

    def _run(
        self, sent: Sent, at_ms: int, slot: int, state: State | None = None
    ) -> execution.ExecutionResult:
        if sent.instructions is None:
            # Undecodable: it fails at its first bad instruction, paying the signatures' fee.
            fee = metering.budget(len(sent.tx.signatures), []).fee
            overlay = Overlay(self._bank if state is None else state)
            overlay.lamports[sent.payer] = overlay.wallet(sent.payer) - fee
            err = {"InstructionError": [sent.decode_error, "InvalidInstructionData"]}
            return execution.ExecutionResult(err, [], 0, fee, [], overlay)
        blockhash = self._blockhashes.digest(slot)
        return self._bank.execute(sent.tx, sent.instructions, at_ms, blockhash, state, sent.budget)

    def _commit(self, sent: Sent, result: execution.ExecutionResult, at_ms: int, slot: int) -> None:
        keys = [str(key) for key in sent.tx.message.account_keys]
        payer = sent.payer
        before = self._bank.balances(keys, payer)
        self._bank.apply(result.overlay)
        after = self._bank.balances(keys, payer)
        self._ledger.append(_entry(sent, result, at_ms, slot, keys, before, after))
        self._fees.slot(slot).paid(sent.price, sent.writable)

    def _land_bundle(self, pending: Pending, at_ms: int, slot: int) -> bool:
        bundle = pending.bundle
        assert bundle is not None
        results: list[execution.ExecutionResult] = []
        state: Overlay | None = None
        for sent in pending.sent:
            stale = sent.nonce is not None and not self._recency.nonce_holds(sent)
            if stale or sent.signature in self._ledger:
                self._bundles.failed(bundle, "BlockhashNotFound")
                return False
            self._prepare(sent, pending.fault, at_ms)
            result = self._run(sent, at_ms, slot, state)
            if result.err is not None:
                self._bundles.failed(bundle, {"index": len(results), "err": result.err})
                return False  # all or nothing: nothing applied, nothing charged
            results.append(result)
            state = result.overlay
        for sent, result in zip(pending.sent, results, strict=True):
            self._commit(sent, result, at_ms, slot)
        self._fees.slot(slot).tips.append(pending.tip)
        self._bundles.landed(bundle, slot)
        return True


def _entry(
    sent: Sent,
    result: execution.ExecutionResult,
    at_ms: int,
    slot: int,
    keys: list[str],
    before: dict[str, Any],
    after: dict[str, Any],
) -> LedgerEntry:
    return LedgerEntry(
        signature=sent.signature,
        slot=slot,
        err=result.err,
        fee=result.fee,
        memo=sent.memo,
        payer=sent.payer,
        input_mint=result.input_mint,
        output_mint=result.output_mint,
        amount_in=result.amount_in,
        amount_out=result.amount_out if result.err is None else 0,
        legs=[leg.to_json() for leg in result.legs],
        landed_ms=at_ms,
        balances={"keys": keys, "pre": before, "post": after},
        units=result.units,
    )
