"""The pools each simulated venue lists, and their seeded starting state.

Depths and reference prices are assumptions sized so that either venue, or a split, can win
(research/dex.md §6.3). Each pool starts at the reference price moved by a seeded offset of up
to ±2.5 %, so the two venues' prices differ by up to 5 % as the product brief asks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from order_engine.tokens import Token, resolve

RAYDIUM = "raydium"
METEORA = "meteora"
VENUES = (RAYDIUM, METEORA)

# Reference prices in USD, the market's starting point.
REFERENCE_USD: dict[str, Decimal] = {
    "SOL": Decimal("150"),
    "USDC": Decimal("1"),
    "USDT": Decimal("1"),
    "JUP": Decimal("0.8"),
    "BONK": Decimal("0.00002"),
    "RAY": Decimal("2"),
}

# (token x, token y, USD depth of each side on Raydium, on Meteora)
PAIRS: tuple[tuple[str, str, int, int], ...] = (
    ("SOL", "USDC", 8_000_000, 5_000_000),
    ("SOL", "USDT", 3_000_000, 2_000_000),
    ("USDC", "USDT", 5_000_000, 6_000_000),
    ("JUP", "USDC", 1_500_000, 1_000_000),
    ("JUP", "SOL", 800_000, 600_000),
    ("BONK", "SOL", 1_000_000, 1_200_000),
    ("BONK", "USDC", 500_000, 400_000),
    ("RAY", "SOL", 900_000, 500_000),
    ("RAY", "USDC", 700_000, 400_000),
)

MAX_VENUE_OFFSET = Decimal("0.025")
RAYDIUM_FEE_RATE = 2_500  # CPMM 0.25 % tier, over 1_000_000
METEORA_FEE_RATE = 3_000  # stand-in constant-product fee until the DLMM model replaces it


@dataclass(frozen=True)
class PoolSpec:
    pool_id: str
    venue: str
    token_x: Token
    token_y: Token
    depth_usd: int
    fee_rate: int

    def initial_state(self, seed: int) -> dict[str, object]:
        """Reserves at the reference price moved by this pool's seeded offset."""
        rng = random.Random(f"{seed}:pool:{self.pool_id}")
        offset = Decimal(rng.randint(-250, 250)) / Decimal(10_000)
        price_x = REFERENCE_USD[self.token_x.symbol] * (1 + offset)
        price_y = REFERENCE_USD[self.token_y.symbol]
        reserve_x = int(Decimal(self.depth_usd) / price_x * self.token_x.one)
        reserve_y = int(Decimal(self.depth_usd) / price_y * self.token_y.one)
        return {
            "kind": "cpmm",
            "reserve_x": str(reserve_x),
            "reserve_y": str(reserve_y),
            "fee_numerator": self.fee_rate,
            "fee_denominator": 1_000_000,
        }


def _specs() -> tuple[PoolSpec, ...]:
    specs = []
    for x, y, raydium_depth, meteora_depth in PAIRS:
        tx, ty = resolve(x), resolve(y)
        specs.append(
            PoolSpec(f"{RAYDIUM}:{x}-{y}", RAYDIUM, tx, ty, raydium_depth, RAYDIUM_FEE_RATE)
        )
        specs.append(
            PoolSpec(f"{METEORA}:{x}-{y}", METEORA, tx, ty, meteora_depth, METEORA_FEE_RATE)
        )
    return tuple(specs)


POOLS: tuple[PoolSpec, ...] = _specs()


def pool_for(venue: str, token_in: Token, token_out: Token) -> tuple[PoolSpec, bool] | None:
    """The venue's pool for a pair and whether the swap sells x for y, or None if unlisted."""
    for spec in POOLS:
        if spec.venue != venue:
            continue
        if (spec.token_x.mint, spec.token_y.mint) == (token_in.mint, token_out.mint):
            return spec, True
        if (spec.token_y.mint, spec.token_x.mint) == (token_in.mint, token_out.mint):
            return spec, False
    return None


def pair_is_listed(token_in: Token, token_out: Token) -> bool:
    return any(pool_for(venue, token_in, token_out) for venue in VENUES)
