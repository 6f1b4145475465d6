"""What a node answers: an error object, and what the chain says of a transaction (its
signature status, what it moved and paid: `getSignatureStatuses`, `getTransaction`'s meta, in
Solana's shapes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RpcError(Exception):
    """A JSON-RPC error object from the node."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.data = code, message, data

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles task exceptions: rebuild from all three arguments.
        return (RpcError, (self.code, self.message, self.data))


@dataclass(frozen=True)
class Blockhash:
    value: str
    last_valid_block_height: int
    slot: int


@dataclass(frozen=True)
class SignatureStatus:
    signature: str
    slot: int
    err: Any  # Solana's TransactionError JSON, None when the transaction succeeded
    confirmation_status: str | None  # processed | confirmed | finalized
    # What it moved, when the poller fetched it with the status (one batch for all).
    balances: TransactionBalances | None = None
    # Sent to the block engine, which reports its bundle Failed: it never lands, and nothing
    # was charged (the poller's `getInflightBundleStatuses`).
    bundle_failed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.err is None

    @property
    def is_confirmed(self) -> bool:
        return self.confirmation_status in ("confirmed", "finalized")


@dataclass(frozen=True)
class TransactionBalances:
    """What a landed transaction moved, from `getTransaction`'s meta (Solana's shape)."""

    slot: int
    err: Any
    fee: int
    account_keys: tuple[str, ...]
    pre_lamports: tuple[int, ...]
    post_lamports: tuple[int, ...]
    pre_tokens: dict[tuple[str, str], int]  # (owner, mint) -> atoms
    post_tokens: dict[tuple[str, str], int]
    units_consumed: int | None = None  # meta.computeUnitsConsumed

    def received(self, owner: str, mint: str, native: bool) -> int:
        """Atoms of `mint` that `owner` gained; for native SOL, lamports net of the fee."""
        if native:
            index = self.account_keys.index(owner)
            return self.post_lamports[index] - self.pre_lamports[index] + self.fee
        key = (owner, mint)
        return self.post_tokens.get(key, 0) - self.pre_tokens.get(key, 0)
