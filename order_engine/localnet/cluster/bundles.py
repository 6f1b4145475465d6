"""The block engine's bundles: tip accounts, bundle ids and the statuses it reports.

As Jito's block engine has them (https://docs.jito.wtf/lowlatencytxnsend/): up to 5 signed
transactions executed in order, all or nothing, in one slot, never seen by anyone before they
land; one of them must tip (a System transfer of at least 1,000 lamports to one of 8 tip
accounts). A bundle's id is the hex SHA-256 of its transactions' first signatures joined with
commas (jito-solana's `derive_bundle_id`). The in-flight statuses look back 5 minutes: `Pending`
until it lands or fails, `Landed` with its slot, `Failed` when it could not execute (or its
blockhash expired first), `Invalid` for an id unknown or older than that. Records persist
(`store.py`'s bundles), so statuses survive a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from solders.pubkey import Pubkey

if TYPE_CHECKING:
    from order_engine.localnet.cluster.bank import Bank
    from order_engine.localnet.cluster.sent import Sent

MAX_BUNDLE_TRANSACTIONS = 5
MIN_TIP_LAMPORTS = 1_000
TIP_ACCOUNT_COUNT = 8
INFLIGHT_LOOKBACK_MS = 5 * 60 * 1000
PENDING, LANDED, FAILED, INVALID = "Pending", "Landed", "Failed", "Invalid"


def tip_accounts(seed: int) -> list[str]:
    """The 8 tip accounts: fixed for a seed (mainnet's are 8 fixed addresses as well)."""
    return [
        str(Pubkey(hashlib.sha256(f"{seed}:tip-account:{i}".encode()).digest()))
        for i in range(TIP_ACCOUNT_COUNT)
    ]


def bundle_id(signatures: Sequence[str]) -> str:
    return hashlib.sha256(",".join(signatures).encode()).hexdigest()


def tip_of(sent: Sequence[Sent], accounts: frozenset[str]) -> int:
    """Lamports the transactions transfer to tip accounts."""
    tip = 0
    for one in sent:
        for ix in one.instructions or ():
            if type(ix).__name__ == "SystemTransfer" and str(ix.destination) in accounts:
                tip += ix.lamports
    return tip


@dataclass
class BundleRecord:
    bundle_id: str
    signatures: list[str]
    received_ms: int
    status: str = PENDING
    slot: int | None = None
    err: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "bundleId": self.bundle_id,
            "signatures": self.signatures,
            "receivedMs": self.received_ms,
            "status": self.status,
            "slot": self.slot,
            "err": self.err,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BundleRecord:
        return cls(
            d["bundleId"], d["signatures"], d["receivedMs"], d["status"], d["slot"], d["err"]
        )


class BundleBook:
    """Every bundle received, with its status."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank  # its batch persists the records
        self._records: dict[str, BundleRecord] = {}
        self._seq: dict[str, int] = {}

    def load(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            found = BundleRecord.from_json(record)
            self._records[found.bundle_id] = found
            self._seq[found.bundle_id] = len(self._seq)

    def get(self, bundle: str) -> BundleRecord | None:
        return self._records.get(bundle)

    def received(self, bundle: str, signatures: list[str], at_ms: int) -> BundleRecord:
        record = BundleRecord(bundle, signatures, at_ms)
        self._records[bundle] = record
        self._seq.setdefault(bundle, len(self._seq))
        self._persist(record)
        return record

    def landed(self, bundle: str, slot: int) -> None:
        self._settle(bundle, LANDED, slot, None)

    def failed(self, bundle: str, err: Any = None) -> None:
        self._settle(bundle, FAILED, None, err)

    def _settle(self, bundle: str, status: str, slot: int | None, err: Any) -> None:
        record = self._records.get(bundle)
        if record is not None and record.status == PENDING:
            record.status, record.slot, record.err = status, slot, err
            self._persist(record)

    def _persist(self, record: BundleRecord) -> None:
        seq = self._seq[record.bundle_id]
        self._bank.batch.bundles[record.bundle_id] = (seq, record.to_json())

    def inflight(self, bundle: str, now_ms: int) -> dict[str, Any]:
        """getInflightBundleStatuses' entry for one id."""
        record = self._records.get(bundle)
        if record is None or record.received_ms + INFLIGHT_LOOKBACK_MS < now_ms:
            return {"bundle_id": bundle, "status": INVALID, "landed_slot": None}
        return {"bundle_id": bundle, "status": record.status, "landed_slot": record.slot}

    def landed_status(
        self, bundle: str, current: int, finalized_depth: int
    ) -> dict[str, Any] | None:
        """getBundleStatuses' entry for one id: landed bundles only."""
        record = self._records.get(bundle)
        if record is None or record.status != LANDED or record.slot is None:
            return None
        depth = current - record.slot
        level = (
            "finalized" if depth >= finalized_depth else "confirmed" if depth >= 1 else "processed"
        )
        return {
            "bundle_id": bundle,
            "transactions": record.signatures,
            "slot": record.slot,
            "confirmation_status": level,
            "err": {"Ok": None},
        }
