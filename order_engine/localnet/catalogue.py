"""The pools the localnet lists at genesis, their seeded starting state, and launched pools.

Depths, fee tiers and bin steps are assumptions sized so that either venue, or a split, can win
(docs/venues.md): Raydium pools are deep constant-product CPMM pools; Meteora pools are
DLMM pools whose liquidity sits in the 69 bins either side of the price, so they are deeper near
the mid but run out sooner. Each pool starts at the seeded market's price for its venue.

A `PoolSpec` names a pool (`raydium:SOL-USDC`), its tokens (x = the pair's first symbol, y = the
second, not sorted: Raydium's token_0 is x) and its parameters; `launch` adds specs at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.domain.tokens import TOKENS, Token
from order_engine.localnet import pools
from order_engine.localnet.market import Market

RAYDIUM = "raydium"
METEORA = "meteora"
VENUES = (RAYDIUM, METEORA)

# Starting reference prices in USD.
REFERENCE_USD: dict[str, Decimal] = {
    "SOL": Decimal("150"),
    "USDC": Decimal("1"),
    "USDT": Decimal("1"),
    "JUP": Decimal("0.8"),
    "BONK": Decimal("0.00002"),
    "RAY": Decimal("2"),
}

# Raydium CPMM AmmConfig index per trade-fee tier (plan: 2500 -> 0, 100 -> 1, 10000 -> 2).
AMM_CONFIG_INDEX: dict[int, int] = {2_500: 0, 100: 1, 10_000: 2}


@dataclass(frozen=True)
class PairSpec:
    x: str
    y: str
    raydium_depth_usd: int  # per side
    raydium_fee_rate: int  # CPMM tier over 1_000_000
    meteora_depth_usd: int  # per side, over all bins
    bin_step: int
    base_factor: int


PAIRS: tuple[PairSpec, ...] = (
    PairSpec("SOL", "USDC", 8_000_000, 2_500, 3_000_000, 10, 10_000),
    PairSpec("SOL", "USDT", 3_000_000, 2_500, 1_500_000, 10, 10_000),
    PairSpec("USDC", "USDT", 5_000_000, 100, 4_000_000, 1, 10_000),
    PairSpec("JUP", "USDC", 1_500_000, 2_500, 700_000, 20, 5_000),
    PairSpec("JUP", "SOL", 800_000, 2_500, 400_000, 20, 5_000),
    PairSpec("BONK", "SOL", 1_000_000, 2_500, 800_000, 80, 2_500),
    PairSpec("BONK", "USDC", 500_000, 2_500, 300_000, 80, 2_500),
    PairSpec("RAY", "SOL", 900_000, 2_500, 400_000, 20, 5_000),
    PairSpec("RAY", "USDC", 700_000, 2_500, 300_000, 20, 5_000),
)
VARIABLE_FEE_CONTROL = 40_000  # docs/venues.md, "Golden vectors" (bin step 10: 5 bins -> +0.01 %)
# A launched token is volatile: Meteora's launch pools use wide bins.
LAUNCH_FEE_RATE = 2_500
LAUNCH_BIN_STEP = 80
LAUNCH_BASE_FACTOR = 2_500


@dataclass(frozen=True)
class PoolSpec:
    pool_id: str
    venue: str
    token_x: Token
    token_y: Token
    fee_rate: int  # Raydium trade fee over 1e6
    bin_step: int  # Meteora
    base_factor: int  # Meteora
    launched: bool = False

    @property
    def amm_config_index(self) -> int:
        return AMM_CONFIG_INDEX[self.fee_rate]

    def target_mid(self, market: Market, at_ms: int) -> Fraction:
        """Where the market wants this pool's mid: Y atoms per X atom, skew included."""
        price_x = market.reference_usd(self.token_x.symbol, at_ms)
        price_y = market.reference_usd(self.token_y.symbol, at_ms)
        skew = 1 + market.skew(self.pool_id, at_ms)
        per_whole = Fraction(price_x * skew) / Fraction(price_y)
        return per_whole * self.token_y.one / self.token_x.one

    def to_json(self) -> dict[str, Any]:
        return {
            "pool_id": self.pool_id,
            "venue": self.venue,
            "x": [self.token_x.symbol, self.token_x.mint, self.token_x.decimals],
            "y": [self.token_y.symbol, self.token_y.mint, self.token_y.decimals],
            "fee_rate": self.fee_rate,
            "bin_step": self.bin_step,
            "base_factor": self.base_factor,
            "launched": self.launched,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PoolSpec:
        return cls(
            pool_id=data["pool_id"],
            venue=data["venue"],
            token_x=Token(*data["x"]),
            token_y=Token(*data["y"]),
            fee_rate=data["fee_rate"],
            bin_step=data["bin_step"],
            base_factor=data["base_factor"],
            launched=data["launched"],
        )


def initial_state(spec: PoolSpec, pair: PairSpec, market: Market, at_ms: int) -> pools.Pool:
    """A genesis pool at the market's price for its venue, sized by the pair's USD depth."""
    mid = spec.target_mid(market, at_ms)
    x, y = spec.token_x, spec.token_y
    if spec.venue == RAYDIUM:
        reserve_x = int(pair.raydium_depth_usd / REFERENCE_USD[x.symbol] * x.one)
        reserve_y = int(Fraction(reserve_x) * mid)
        return pools.new_cpmm(reserve_x, reserve_y, spec.fee_rate)
    depth_x = int(pair.meteora_depth_usd / REFERENCE_USD[x.symbol] * x.one)
    depth_y = int(pair.meteora_depth_usd / REFERENCE_USD[y.symbol] * y.one)
    return pools.new_dlmm(
        mid, depth_x, depth_y, spec.bin_step, spec.base_factor, VARIABLE_FEE_CONTROL
    )


def launched_state(spec: PoolSpec, mid: Fraction, quote_depth_atoms: int) -> pools.Pool:
    """A launched pool at `mid` (quote atoms per token atom) holding `quote_depth_atoms` a side."""
    depth_x = int(Fraction(quote_depth_atoms) / mid)
    if depth_x <= 0:
        raise ValueError("liquidity too small for that price")
    if spec.venue == RAYDIUM:
        return pools.new_cpmm(depth_x, quote_depth_atoms, spec.fee_rate)
    return pools.new_dlmm(
        mid, depth_x, quote_depth_atoms, spec.bin_step, spec.base_factor, VARIABLE_FEE_CONTROL
    )


def launch_spec(venue: str, token: Token, quote: Token) -> PoolSpec:
    return PoolSpec(
        pool_id=f"{venue}:{token.symbol}-{quote.symbol}",
        venue=venue,
        token_x=token,
        token_y=quote,
        fee_rate=LAUNCH_FEE_RATE,
        bin_step=LAUNCH_BIN_STEP,
        base_factor=LAUNCH_BASE_FACTOR,
        launched=True,
    )


def genesis() -> list[tuple[PoolSpec, PairSpec]]:
    """Every pair × venue, in a fixed order."""
    by_symbol = {t.symbol: t for t in TOKENS}
    specs = []
    for pair in PAIRS:
        tx, ty = by_symbol[pair.x], by_symbol[pair.y]
        for venue in VENUES:
            spec = PoolSpec(
                pool_id=f"{venue}:{pair.x}-{pair.y}",
                venue=venue,
                token_x=tx,
                token_y=ty,
                fee_rate=pair.raydium_fee_rate,
                bin_step=pair.bin_step,
                base_factor=pair.base_factor,
            )
            specs.append((spec, pair))
    return specs
