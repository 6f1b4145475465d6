"""The ledger: every transaction that landed, failed ones included, with what it did.

Entries are never pruned (`searchTransactionHistory` always finds a landed signature) and are
persisted with the batch of the `advance` that landed them. A signature's confirmation level
follows from its depth below the current slot: processed in its own slot, confirmed one slot
later (one bank, so supermajority votes are immediate), finalized `FINALIZED_DEPTH` slots later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from order_engine.localnet.cluster.bank import Bank

FINALIZED_DEPTH = 32  # slots from processed to finalized (Tower BFT's 32-deep lockout)


@dataclass
class LedgerEntry:
    signature: str
    slot: int
    err: Any
    fee: int
    memo: str | None
    payer: str
    input_mint: str | None
    output_mint: str | None
    amount_in: int
    amount_out: int
    legs: list[dict[str, Any]]
    landed_ms: int
    # What `getTransaction` reports: account keys with lamports and token balances around it.
    balances: dict[str, Any] | None = None
    units: int = 0  # compute units consumed (`meta.computeUnitsConsumed`)

    def to_json(self) -> dict[str, Any]:
        return {
            "balances": self.balances,
            "signature": self.signature,
            "status": "landed" if self.err is None else "failed",
            "slot": self.slot,
            "err": self.err,
            "fee": self.fee,
            "memo": self.memo,
            "payer": self.payer,
            "inputMint": self.input_mint,
            "outputMint": self.output_mint,
            "amountIn": self.amount_in,
            "amountOut": self.amount_out,
            "legs": self.legs,
            "landedMs": self.landed_ms,
            "unitsConsumed": self.units,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LedgerEntry:
        return cls(
            d["signature"],
            d["slot"],
            d["err"],
            d["fee"],
            d["memo"],
            d["payer"],
            d["inputMint"],
            d["outputMint"],
            d["amountIn"],
            d["amountOut"],
            d["legs"],
            d["landedMs"],
            d.get("balances"),
            d.get("unitsConsumed", 0),
        )


class Ledger:
    """Landed transactions by signature, in landing order."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank  # its batch persists new entries
        self._entries: dict[str, LedgerEntry] = {}
        self._seq = 0

    def load(self, entries: list[dict[str, Any]]) -> None:
        for entry_json in entries:
            entry = LedgerEntry.from_json(entry_json)
            self._entries[entry.signature] = entry
        self._seq = len(self._entries)

    def __contains__(self, signature: str) -> bool:
        return signature in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, signature: str) -> LedgerEntry | None:
        return self._entries.get(signature)

    def append(self, entry: LedgerEntry) -> None:
        self._entries[entry.signature] = entry
        self._seq += 1
        self._bank.batch.ledger.append((entry.signature, self._seq, entry.to_json(), entry.memo))

    def status(self, signature: str, current: int) -> dict[str, Any] | None:
        """A `getSignatureStatuses` value at the `current` slot; None if it never landed."""
        entry = self._entries.get(signature)
        if entry is None:
            return None
        depth = current - entry.slot
        if depth >= FINALIZED_DEPTH:
            confirmations, level = None, "finalized"
        else:
            confirmations = max(depth, 0)
            level = "confirmed" if depth >= 1 else "processed"
        err = entry.err
        return {
            "slot": entry.slot,
            "confirmations": confirmations,
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "confirmationStatus": level,
        }

    def query(self, memo: str | None = None, signature: str | None = None) -> list[LedgerEntry]:
        """Entries of one signature, or all of them, narrowed to one memo if given."""
        if signature is not None:
            entry = self._entries.get(signature)
            entries = [] if entry is None else [entry]
        else:
            entries = list(self._entries.values())
        if memo is not None:
            entries = [e for e in entries if e.memo == memo]
        return entries
