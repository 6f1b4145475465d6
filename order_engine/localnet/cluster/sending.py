"""Decoding a sent transaction."""

from __future__ import annotations

from typing import Any

from solders.transaction import VersionedTransaction

from order_engine.chain.programs import MAX_TRANSACTION_SIZE
from order_engine.localnet.cluster.errors import RpcError


def _memo_of(instructions: list[Any] | None) -> str | None:
    for ix in instructions or ():
        if type(ix).__name__ == "Memo":
            return ix.text
    return None


def _decode_sent(raw: bytes) -> tuple[VersionedTransaction, list[Any] | None, Any]:
    """A sent transaction, decoded and its signatures verified (RpcError as a node answers),
    with its instructions, or None and the index of the first one that does not decode: that
    is not an error of the send itself, but of the transaction when it runs."""
    from order_engine.localnet import instructions as decoder

    if len(raw) > MAX_TRANSACTION_SIZE:
        raise RpcError(
            -32602,
            f"decoded solana_transaction::versioned::VersionedTransaction too large: "
            f"{len(raw)} bytes (max: {MAX_TRANSACTION_SIZE} bytes)",
        )
    try:
        tx = decoder.decode_transaction(raw)
    except decoder.TransactionDecodeError as exc:
        raise RpcError(
            -32602,
            f"failed to deserialize solana_transaction::versioned::VersionedTransaction: {exc}",
        ) from None
    if not tx.signatures or not all(tx.verify_with_results()):
        raise RpcError(-32003, "Transaction signature verification failure")
    try:
        return tx, list(decoder.decode_instructions(tx)), None
    except decoder.InstructionDecodeError as exc:
        return tx, None, exc.index
