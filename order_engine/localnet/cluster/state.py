"""The pools the cluster holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from order_engine.localnet import pools
from order_engine.localnet.catalogue import METEORA, PoolSpec
from order_engine.localnet.cluster.accounts import Account


@dataclass
class PoolRecord:
    """One pool: spec, math state, where it is served, and its cached accounts."""

    spec: PoolSpec
    pool: pools.Pool
    market_at_ms: int
    drained: bool = False
    seq: int = 0
    address: str = ""
    expected: dict[str, str] = field(default_factory=dict)
    served: dict[str, Account] | None = None  # None: stale, rebuild before serving

    @property
    def pool_id(self) -> str:
        return self.spec.pool_id

    @property
    def venue(self) -> str:
        return self.spec.venue

    @property
    def mint_x(self) -> str:
        return self.spec.token_x.mint

    @property
    def mint_y(self) -> str:
        return self.spec.token_y.mint

    def mid_price(self) -> Decimal | None:
        """Whole Y per whole X at the pool's mid."""
        mid = pools.mid_price(self.pool)
        if mid is None or (self.drained and self.venue == METEORA):
            return None
        whole = mid * self.spec.token_x.one / self.spec.token_y.one
        return Decimal(whole.numerator) / Decimal(whole.denominator)
