"""The pools each simulated venue lists, and their seeded starting state.

Depths, fee tiers and bin steps are assumptions sized so that either venue, or a split, can win
(research/dex.md §6.3): Raydium pools are deep constant-product CPMM pools; Meteora pools are
DLMM pools whose liquidity sits in the 69 bins either side of the price, so they are deeper near
the mid but run out sooner. Each pool starts at the seeded market's price for its venue.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.tokens import Token, resolve
from order_engine.venues import market, pools

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
VARIABLE_FEE_CONTROL = 40_000  # research/dex.md §6.10 (bin step 10: 5 bins -> +0.01 %)


@dataclass(frozen=True)
class PoolSpec:
    pool_id: str
    venue: str
    token_x: Token
    token_y: Token
    pair: PairSpec

    def target_mid(self, seed: int, at_ms: int) -> Fraction:
        """Where the market wants this pool's mid: Y atoms per X atom, skew included."""
        price_x = market.reference_usd(
            seed, self.token_x.symbol, REFERENCE_USD[self.token_x.symbol], at_ms
        )
        price_y = market.reference_usd(
            seed, self.token_y.symbol, REFERENCE_USD[self.token_y.symbol], at_ms
        )
        skew = 1 + market.venue_skew(seed, self.pool_id, at_ms)
        per_whole = Fraction(price_x * skew) / Fraction(price_y)
        return per_whole * self.token_y.one / self.token_x.one

    def initial_state(self, seed: int, at_ms: int) -> dict[str, Any]:
        mid = self.target_mid(seed, at_ms)
        if self.venue == RAYDIUM:
            depth_usd = self.pair.raydium_depth_usd
            reserve_x = int(depth_usd / REFERENCE_USD[self.token_x.symbol] * self.token_x.one)
            reserve_y = int(Fraction(reserve_x) * mid)
            state = pools.new_cpmm(reserve_x, reserve_y, self.pair.raydium_fee_rate)
        else:
            depth_usd = self.pair.meteora_depth_usd
            depth_x = int(depth_usd / REFERENCE_USD[self.token_x.symbol] * self.token_x.one)
            depth_y = int(depth_usd / REFERENCE_USD[self.token_y.symbol] * self.token_y.one)
            state = pools.new_dlmm(
                mid,
                depth_x,
                depth_y,
                self.pair.bin_step,
                self.pair.base_factor,
                VARIABLE_FEE_CONTROL,
            )
        return {**state, "market_at_ms": at_ms}


def _specs() -> tuple[PoolSpec, ...]:
    specs = []
    for pair in PAIRS:
        tx, ty = resolve(pair.x), resolve(pair.y)
        for venue in VENUES:
            specs.append(PoolSpec(f"{venue}:{pair.x}-{pair.y}", venue, tx, ty, pair))
    return tuple(specs)


POOLS: tuple[PoolSpec, ...] = _specs()
_BY_ID = {spec.pool_id: spec for spec in POOLS}


def spec(pool_id: str) -> PoolSpec:
    return _BY_ID[pool_id]


def pool_for(venue: str, token_in: Token, token_out: Token) -> tuple[PoolSpec, bool] | None:
    """The venue's pool for a pair and whether the swap sells x for y, or None if unlisted."""
    for candidate in POOLS:
        if candidate.venue != venue:
            continue
        if (candidate.token_x.mint, candidate.token_y.mint) == (token_in.mint, token_out.mint):
            return candidate, True
        if (candidate.token_y.mint, candidate.token_x.mint) == (token_in.mint, token_out.mint):
            return candidate, False
    return None


def pair_is_listed(token_in: Token, token_out: Token) -> bool:
    return any(pool_for(venue, token_in, token_out) for venue in VENUES)
