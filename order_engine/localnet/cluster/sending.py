"""Sending: `sendTransaction` as a node takes it, up to the transaction's place in the queue.

In order: decode and verify the signatures (-32602, -32003), answer a signature already landed
(-32002 AlreadyProcessed, unless preflight is skipped) or already on its way (the same
signature back: an idempotent re-broadcast), take the next fault planned for its memo, roll a
transient failure, check the blockhash is still valid (-32002 BlockhashNotFound), simulate it
at the current state unless `skipPreflight` (-32002 with the simulation's logs), and schedule
it to land after a seeded latency (`landing.Landing`). A re-broadcast of a transaction no leader
took (dropped, and past its landing instant) is a fresh arrival: it rolls its chances again.
"""

from __future__ import annotations

import random
from typing import Any

from solders.transaction import VersionedTransaction

from order_engine.chain.programs import MAX_TRANSACTION_SIZE
from order_engine.localnet import instructions as decoder
from order_engine.localnet.clock import slot_at
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.blockhashes import Blockhashes
from order_engine.localnet.cluster.errors import NodeError, Stalled
from order_engine.localnet.cluster.faults import Faults, roll
from order_engine.localnet.cluster.landing import Landing, Pending
from order_engine.localnet.cluster.ledger import Ledger
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.execution.errors import display_transaction_error


def _unhealthy(http_status: int = 200) -> NodeError:
    return NodeError(-32005, "Node is unhealthy", {"numSlotsBehind": None}, http_status)


class Sender:
    """Takes sent transactions into the landing queue, or refuses them as a node would."""

    def __init__(
        self,
        settings: LocalnetSettings,
        clock: Any,
        bank: Bank,
        ledger: Ledger,
        landing: Landing,
        faults: Faults,
        blockhashes: Blockhashes,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._bank = bank
        self._ledger = ledger
        self._landing = landing
        self._faults = faults
        self._blockhashes = blockhashes

    def send(self, raw: bytes, skip_preflight: bool) -> str:
        """sendTransaction after base58/base64 decoding: the signature, or a `NodeError`."""
        tx, instructions, decode_error = decode_sent(raw)
        signature = str(tx.signatures[0])
        memo = memo_of(instructions)
        if signature in self._ledger:
            if skip_preflight:
                return signature  # a real node accepts it and drops the duplicate
            raise preflight_error("AlreadyProcessed", [], 0)
        earlier = self._landing.pending.get(signature)
        if earlier is not None and not self._landing.lost(earlier):
            return signature  # on its way already: an idempotent re-broadcast
        fault = self._faults.take(memo)
        if fault == "stall":
            raise Stalled()
        if fault == "rpc_unavailable":
            raise _unhealthy()
        attempt = self._landing.count_send(signature)
        rng = random.Random(f"{self._settings.seed}:send:{signature}:{attempt}")
        if fault is None and roll(rng, self._settings.transient_failure_rate):
            raise _unhealthy()
        current = slot_at(self._clock.now_ms(), self._settings.slot_ms)
        blockhash_slot = self._blockhashes.slot_of(bytes(tx.message.recent_blockhash), current)
        if blockhash_slot is None:
            raise preflight_error("BlockhashNotFound", [], 0)
        if not skip_preflight:
            self._preflight(tx, instructions, decode_error)
        land_at_ms, landing_fault = self._landing_of(fault, rng)
        last_valid = blockhash_slot + self._blockhashes.validity - 1
        self._landing.schedule(
            Pending(
                signature,
                tx,
                instructions,
                decode_error,
                memo,
                last_valid,
                land_at_ms,
                landing_fault,
            )
        )
        if fault == "lost_response":
            # Accepted, but the answer never reaches the sender (the double-spend trap).
            raise _unhealthy(503)
        return signature

    def _landing_of(self, fault: str | None, rng: random.Random) -> tuple[int, str | None]:
        """When it will land, and the fault that will meet it there: a planned `drop` or
        `price_jump`, or a congestion roll (never included)."""
        now_ms = self._clock.now_ms()
        land_at_ms = now_ms + self._settings.swap_latency.sample_ms(rng)
        landing_fault = fault if fault in ("drop", "price_jump") else None
        if landing_fault is None and roll(rng, self._faults.expiry_rate(now_ms)):
            landing_fault = "congestion"
        return land_at_ms, landing_fault

    def _preflight(
        self, tx: VersionedTransaction, instructions: list[Any] | None, decode_error: Any
    ) -> None:
        """Simulate at the current state; raise -32002 with the simulation result on error."""
        if instructions is None:
            err = {"InstructionError": [decode_error, "InvalidInstructionData"]}
            raise preflight_error(err, [], 0)
        now_ms = self._clock.now_ms()
        for record, _ in self._bank.touched(instructions):
            self._bank.catch_up(record, now_ms)
        result = self._bank.execute(tx, instructions, now_ms)
        if result.err is not None:
            raise preflight_error(result.err, result.logs, result.units)


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


def memo_of(instructions: list[Any] | None) -> str | None:
    for ix in instructions or ():
        if type(ix).__name__ == "Memo":
            return ix.text
    return None


def decode_sent(raw: bytes) -> tuple[VersionedTransaction, list[Any] | None, Any]:
    """A sent transaction, decoded and its signatures verified (NodeError as a node answers),
    with its instructions, or None and the index of the first one that does not decode: that
    is not an error of the send itself, but of the transaction when it runs."""
    if len(raw) > MAX_TRANSACTION_SIZE:
        raise NodeError(
            -32602,
            f"decoded solana_transaction::versioned::VersionedTransaction too large: "
            f"{len(raw)} bytes (max: {MAX_TRANSACTION_SIZE} bytes)",
        )
    try:
        tx = decoder.decode_transaction(raw)
    except decoder.TransactionDecodeError as exc:
        raise NodeError(
            -32602,
            f"failed to deserialize solana_transaction::versioned::VersionedTransaction: {exc}",
        ) from None
    if not tx.signatures or not all(tx.verify_with_results()):
        raise NodeError(-32003, "Transaction signature verification failure")
    try:
        return tx, list(decoder.decode_instructions(tx)), None
    except decoder.InstructionDecodeError as exc:
        return tx, None, exc.index
