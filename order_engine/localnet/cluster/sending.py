"""Sending: `sendTransaction` as a node takes it, and the block engine's `sendBundle` and
`sendTransaction`, up to their place in the landing queue.

A transaction, in order: decode and verify the signatures (-32602, -32003), answer a signature
already landed (-32002 AlreadyProcessed, unless preflight is skipped) or already on its way (the
same signature back: an idempotent re-broadcast), take the next fault planned for its memo, roll
a transient failure, check its blockhash (or durable nonce) still lets it land (-32002
BlockhashNotFound), simulate it at the current state unless `skipPreflight` (-32002 with the
simulation's logs), and schedule it to land after a seeded latency (`landing.Landing`). A
re-broadcast of a transaction no leader took (dropped, and past its landing instant) is a fresh
arrival: it rolls its chances again.

A bundle (at most 5 transactions, one of them tipping at least 1,000 lamports to a tip account;
-32602 otherwise, saying which) goes the same way without preflight: the block engine runs it
when it lands, all or nothing (`inclusion.Inclusion`). The block engine's `sendTransaction` is
a bundle of one, so it is never public and never charged when it fails.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from order_engine.localnet.clock import slot_at
from order_engine.localnet.cluster import bundles
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.blockhashes import Blockhashes
from order_engine.localnet.cluster.bundles import BundleBook
from order_engine.localnet.cluster.errors import NodeError, Stalled
from order_engine.localnet.cluster.faults import Faults, roll
from order_engine.localnet.cluster.landing import Landing
from order_engine.localnet.cluster.ledger import Ledger
from order_engine.localnet.cluster.sent import Pending, Recency, Sent, decode_sent
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.execution.errors import display_transaction_error


def _unhealthy(http_status: int = 200) -> NodeError:
    return NodeError(-32005, "Node is unhealthy", {"numSlotsBehind": None}, http_status)


class Sender:
    """Takes sent transactions and bundles into the landing queue, or refuses them."""

    def __init__(
        self,
        settings: LocalnetSettings,
        clock: Any,
        bank: Bank,
        ledger: Ledger,
        landing: Landing,
        faults: Faults,
        blockhashes: Blockhashes,
        recency: Recency,
        book: BundleBook,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._bank = bank
        self._ledger = ledger
        self._landing = landing
        self._faults = faults
        self._blockhashes = blockhashes
        self._recency = recency
        self._book = book
        self.tip_accounts = bundles.tip_accounts(settings.seed)
        self._tip_set = frozenset(self.tip_accounts)

    def send(self, raw: bytes, skip_preflight: bool) -> str:
        """sendTransaction after base58/base64 decoding: the signature, or a `NodeError`."""
        sent = decode_sent(raw)
        signature = sent.signature
        if signature in self._ledger:
            if skip_preflight:
                return signature  # a real node accepts it and drops the duplicate
            raise preflight_error("AlreadyProcessed", [], 0)
        earlier = self._landing.pending.get(signature)
        if earlier is not None and not self._landing.lost(earlier):
            return signature  # on its way already: an idempotent re-broadcast
        fault, rng = self._admit(signature, sent.memo)
        last_valid = self._recency.last_valid(sent, self._current())
        if last_valid is None:
            raise preflight_error("BlockhashNotFound", [], 0)
        if not skip_preflight:
            self._preflight(sent)
        self._schedule(Pending(signature, (sent,), last_valid, *self._landing_of(fault, rng)))
        if fault == "lost_response":
            # Accepted, but the answer never reaches the sender (the double-spend trap).
            raise _unhealthy(503)
        return signature

    def send_bundle(self, raws: Sequence[bytes]) -> str:
        """The block engine's sendBundle: the bundle id, or a `NodeError`."""
        if not raws:
            raise NodeError(-32602, "bundle must contain at least one transaction")
        if len(raws) > bundles.MAX_BUNDLE_TRANSACTIONS:
            raise NodeError(
                -32602,
                f"bundle contains {len(raws)} transactions, more than the maximum of "
                f"{bundles.MAX_BUNDLE_TRANSACTIONS}",
            )
        return self._bundle([_decoded(raw, index) for index, raw in enumerate(raws)])

    def send_protected(self, raw: bytes) -> str:
        """The block engine's sendTransaction: a bundle of one; the signature."""
        sent = _decoded(raw, 0)
        self._bundle([sent])
        return sent.signature

    def _bundle(self, sent: list[Sent]) -> str:
        signatures = [s.signature for s in sent]
        bundle = bundles.bundle_id(signatures)
        tip = bundles.tip_of(sent, self._tip_set)
        if tip < bundles.MIN_TIP_LAMPORTS:
            raise NodeError(
                -32602,
                f"bundle {bundle} tips {tip} lamports to the tip accounts (getTipAccounts): "
                f"at least {bundles.MIN_TIP_LAMPORTS} are required in one of its transactions",
            )
        earlier = self._landing.pending.get(bundle)
        record = self._book.get(bundle)
        if earlier is not None and not self._landing.lost(earlier):
            return bundle  # on its way already
        if earlier is None and record is not None and record.status != bundles.PENDING:
            return bundle  # landed or failed already: the same id, its status tells
        now_ms = self._clock.now_ms()
        if any(s in self._ledger for s in signatures):
            self._book.received(bundle, signatures, now_ms)
            self._book.failed(bundle, "AlreadyProcessed")
            return bundle
        memo = next((s.memo for s in sent if s.memo is not None), None)
        fault, rng = self._admit(bundle, memo)
        last_valid = self._last_valid(sent)
        self._book.received(bundle, signatures, now_ms)
        land_at_ms, landing_fault = self._landing_of(fault, rng)
        pending = Pending(bundle, tuple(sent), last_valid, land_at_ms, landing_fault, bundle, tip)
        self._schedule(pending)
        if fault == "lost_response":
            raise _unhealthy(503)
        return bundle

    def _last_valid(self, sent: list[Sent]) -> int:
        current = self._current()
        found = []
        for index, one in enumerate(sent):
            last_valid = self._recency.last_valid(one, current)
            if last_valid is None:
                raise NodeError(-32602, f"transaction {index}: Blockhash not found")
            found.append(last_valid)
        return min(found)

    def _admit(self, key: str, memo: str | None) -> tuple[str | None, random.Random]:
        """The fault planned for this send (refusing it, for some), and its seeded chances."""
        fault = self._faults.take(memo)
        if fault == "stall":
            raise Stalled()
        if fault == "rpc_unavailable":
            raise _unhealthy()
        attempt = self._landing.count_send(key)
        rng = random.Random(f"{self._settings.seed}:send:{key}:{attempt}")
        if fault is None and roll(rng, self._settings.transient_failure_rate):
            raise _unhealthy()
        return fault, rng

    def _schedule(self, pending: Pending) -> None:
        self._landing.schedule(pending)

    def _current(self) -> int:
        return slot_at(self._clock.now_ms(), self._settings.slot_ms)

    def _landing_of(self, fault: str | None, rng: random.Random) -> tuple[int, str | None]:
        """When it will be ready, and the fault that will meet it there: a planned `drop` or
        `price_jump`, or a congestion roll (never included)."""
        now_ms = self._clock.now_ms()
        land_at_ms = now_ms + self._settings.swap_latency.sample_ms(rng)
        landing_fault = fault if fault in ("drop", "price_jump") else None
        if landing_fault is None and roll(rng, self._faults.expiry_rate(now_ms)):
            landing_fault = "congestion"
        return land_at_ms, landing_fault

    def _preflight(self, sent: Sent) -> None:
        """Simulate at the current state; raise -32002 with the simulation result on error."""
        if sent.instructions is None:
            err = {"InstructionError": [sent.decode_error, "InvalidInstructionData"]}
            raise preflight_error(err, [], 0)
        now_ms = self._clock.now_ms()
        for record, _ in self._bank.touched(sent.instructions):
            self._bank.catch_up(record, now_ms)
        blockhash = self._blockhashes.digest(slot_at(now_ms, self._settings.slot_ms))
        result = self._bank.execute(
            sent.tx, sent.instructions, now_ms, blockhash, budget=sent.budget
        )
        if result.err is not None:
            raise preflight_error(result.err, result.logs, result.units)


def _decoded(raw: bytes, index: int) -> Sent:
    """A bundle's transaction, decoded; its refusal says which one."""
    try:
        return decode_sent(raw)
    except NodeError as exc:
        raise NodeError(-32602, f"transaction {index}: {exc.message}") from None


def preflight_error(err: Any, logs: list[str], units: int) -> NodeError:
    return NodeError(
        -32002,
        f"Transaction simulation failed: {display_transaction_error(err)}",
        {
            "err": err,
            "logs": logs,
            "accounts": None,
            "unitsConsumed": units,
            "loadedAccountsDataSize": 0,
            "returnData": None,
            "innerInstructions": None,
            "replacementBlockhash": None,
        },
    )
