"""A venue's quote for an order, computed by the router from the pool's on-chain state."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from order_engine.domain.tokens import Token, decimal_text


@dataclass(frozen=True)
class Quote:
    """One venue's answer for selling `amount_in` atoms of `token_in` for `token_out`."""

    dex: str
    pool_id: str
    token_in: Token
    token_out: Token
    amount_in: int
    amount_out: int
    fee_atoms: int
    fee_bps: Decimal
    price_impact_bps: Decimal
    slot: int
    latency_ms: int
    # The pool as quoted (amount_in -> amount_out), for the router's split search.
    curve: Any = field(default=None, compare=False, repr=False)
    # The pool's decoded state the quote was computed on (what the swap instruction needs).
    view: Any = field(default=None, compare=False, repr=False)

    @property
    def price(self) -> Decimal:
        """Execution price in whole `token_out` per whole `token_in`."""
        return self.token_out.from_atoms(self.amount_out) / self.token_in.from_atoms(self.amount_in)

    def as_event(self) -> dict[str, object]:
        return {
            "dex": self.dex,
            "poolId": self.pool_id,
            "amountIn": decimal_text(self.token_in.from_atoms(self.amount_in)),
            "amountOut": decimal_text(self.token_out.from_atoms(self.amount_out)),
            "price": format(self.price.quantize(Decimal("1e-12")).normalize(), "f"),
            "feeBps": str(self.fee_bps),
            "priceImpactBps": str(self.price_impact_bps),
            "slot": self.slot,
            "latencyMs": self.latency_ms,
        }
