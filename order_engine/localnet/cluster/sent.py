"""What was sent: a decoded transaction (`Sent`), what waits to land (`Pending`: one
transaction from `sendTransaction`, or a bundle from the block engine), and when either may
still land (`Recency`).

A transaction may land while its recent blockhash is among the last 151
(https://solana.com/docs/advanced/confirmation), or, a durable nonce transaction, whose first
instruction advances a nonce account, while that account's nonce still equals its "recent
blockhash" (then it has no expiry, and once its nonce advanced, by it or by another transaction
signed on the same nonce, it never can: of several such transactions at most one is processed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solders.transaction import VersionedTransaction

from order_engine.chain.programs import MAX_TRANSACTION_SIZE
from order_engine.localnet import instructions as decoder
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.blockhashes import Blockhashes
from order_engine.localnet.cluster.errors import NodeError
from order_engine.localnet.execution import metering, nonce_account
from order_engine.localnet.execution.system import read_nonce

NEVER = 1 << 62  # the last valid slot of a durable nonce transaction


@dataclass
class Sent:
    """One sent transaction, decoded, with what the block and the fee market read of it."""

    signature: str
    tx: VersionedTransaction
    instructions: list[Any] | None  # None: undecodable, lands failed
    decode_error: Any
    memo: str | None
    budget: metering.Budget  # its compute-unit limit (what the block is charged), price, fee
    payer: str
    writable: tuple[str, ...]
    nonce: str | None  # the nonce account of a durable nonce transaction

    @property
    def limit(self) -> int:
        return self.budget.limit

    @property
    def price(self) -> int:
        return self.budget.price

    @classmethod
    def of(cls, tx: VersionedTransaction, instructions: list[Any] | None, error: Any) -> Sent:
        message = tx.message  # solders builds the message anew on each access
        keys = message.account_keys
        return cls(
            str(tx.signatures[0]),
            tx,
            instructions,
            error,
            memo_of(instructions),
            metering.budget(len(tx.signatures), instructions or []),
            str(keys[0]),
            decoder.writable_keys(message, keys),
            nonce_account(instructions or []),
        )


@dataclass
class Pending:
    """Accepted, waiting for its landing instant and then for room in a block."""

    key: str  # the signature, or the bundle id
    sent: tuple[Sent, ...]
    last_valid: int  # the last slot it can land in
    land_at_ms: int  # when it is ready (its simulated network latency elapsed)
    fault: str | None  # drop | price_jump | congestion
    bundle: str | None = None  # the bundle id: never public, all or nothing
    tip: int = 0  # lamports a bundle pays to tip accounts
    seq: int = 0  # arrival order

    @property
    def public(self) -> bool:
        """Sent with `sendTransaction` to the node: what the searcher can see."""
        return self.bundle is None

    @property
    def units(self) -> int:
        return sum(s.limit for s in self.sent)

    @property
    def price(self) -> int:
        """Micro-lamports per compute unit it bids: priority fees plus the tip, per unit."""
        units = self.units
        if units == 0:
            return 0
        paid = sum(s.limit * s.price for s in self.sent) + self.tip * 1_000_000
        return paid // units

    @property
    def writable(self) -> tuple[str, ...]:
        if len(self.sent) == 1:
            return self.sent[0].writable
        return tuple(dict.fromkeys(a for s in self.sent for a in s.writable))


class Recency:
    """Whether a transaction's blockhash (or durable nonce) still lets it land."""

    def __init__(self, bank: Bank, blockhashes: Blockhashes) -> None:
        self._bank = bank
        self._blockhashes = blockhashes

    def last_valid(self, sent: Sent, current: int) -> int | None:
        """The last slot it may land in, or None if it may not land now."""
        recent = bytes(sent.tx.message.recent_blockhash)
        slot = self._blockhashes.slot_of(recent, current)
        if slot is not None:
            return slot + self._blockhashes.validity - 1
        return NEVER if self.nonce_holds(sent) else None

    def nonce_holds(self, sent: Sent) -> bool:
        """A durable nonce transaction whose nonce is still its blockhash, its authority a
        signer."""
        if sent.nonce is None or not sent.instructions:
            return False
        nonce = read_nonce(self._bank.data_account(sent.nonce))
        if nonce is None or nonce.durable_nonce != bytes(sent.tx.message.recent_blockhash):
            return False
        message = sent.tx.message
        signers = {str(k) for k in message.account_keys[: message.header.num_required_signatures]}
        return str(sent.instructions[0].authority) in signers

    def still_valid(self, sent: Sent, slot: int) -> bool:
        found = self.last_valid(sent, slot)
        return found is not None and found >= slot


def memo_of(instructions: list[Any] | None) -> str | None:
    for ix in instructions or ():
        if type(ix).__name__ == "Memo":
            return str(ix.text)
    return None


def decode_sent(raw: bytes, verify: bool = True) -> Sent:
    """A sent transaction, decoded and (unless `verify` is off, as a simulation may ask) its
    signatures verified, with its instructions, or None and the index of the first one that
    does not decode: that is not an error of the send itself, but of the transaction when it
    runs. Raises `NodeError` as a node answers."""
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
    if not tx.signatures or (verify and not all(tx.verify_with_results())):
        raise NodeError(-32003, "Transaction signature verification failure")
    try:
        return Sent.of(tx, list(decoder.decode_instructions(tx)), None)
    except decoder.InstructionDecodeError as exc:
        return Sent.of(tx, None, exc.index)
