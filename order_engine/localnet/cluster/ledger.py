"""The ledger: every landed transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        )
