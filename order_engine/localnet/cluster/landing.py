"""Transactions accepted and waiting to land."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solders.transaction import VersionedTransaction


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
