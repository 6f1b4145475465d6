"""Background demand for block space: everyone else's transactions, as virtual bids.

No transaction is built or run for them; per slot and per congestion level the demand is a list
of bids (compute units at a price per unit) drawn from a seeded distribution, a share of it on
the hot pools' writable accounts (the seeded SOL/USDC pools of both venues) at a premium, and a
share sent as bundles that pay a tip on top. The landing's auction (`auction.select`) packs them
with the real transactions into the slot's block, so the clearing price a real transaction must
beat is set by this demand.

The slot's price level is the level's median times a slow wave (±30 % over about forty slots)
and a per-slot jitter (±12 %); with the draw of the bids themselves, the price that clears a
slot moves by a median 13 % from one slot to the next, yet the 75th percentile of the last 20
slots' fees beats the next slot's about 70 % of the time and one of the next three's about
93 % (measured at `high` and `extreme`): a percentile of recent slots predicts it, which is
what fee estimators rely on. Within a slot, bids spread around the
level like a log-normal (σ = 0.6). Everything is a pure function of (seed, slot, level): the
same seed gives the same demand, and a restart finds it again. Prices are integers; the spread
table below is the only place that touches floating point, once, to build integer factors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from math import exp
from statistics import NormalDist

from order_engine.localnet.market import value_noise

QUIET = "quiet"
SLOW_SLOTS = 40  # the slow wave's period, in slots
SLOW_PERMILLE = 300
FAST_PERMILLE = 120
SPREAD_POINTS = 64
MIN_TIP_LAMPORTS = 1_000  # the block engine's minimum tip
# A background bundle bids its compute unit price like any other and tips a quarter of its
# priority fee on top (at least the minimum tip): the tips feed the tip floor, and as the bid
# still ranks by its price, the slots' minimum prices stay where the block cleared, which is
# what fee estimators read (a tiny bundle's minimum tip, counted per unit, would otherwise
# outbid everything and drag the recorded minimum far below the clearing price).
BUNDLE_TIP_PCT = 25
# A bid's size in compute units: from a transfer to a heavy multi-hop swap.
UNIT_SIZES = (1_000, 5_000, 20_000, 60_000, 150_000, 300_000, 600_000)
# Price factors (per mille) at the quantiles of a log-normal with σ = 0.6 and median 1.
SPREAD_PERMILLE = tuple(
    round(1000 * exp(0.6 * NormalDist().inv_cdf((i + 0.5) / SPREAD_POINTS)))
    for i in range(SPREAD_POINTS)
)


@dataclass(frozen=True)
class Level:
    """A congestion level: how much block space is demanded, and at what prices."""

    name: str
    demand_pct: int  # CU demanded, % of the block (the hot pools' up to their account limit)
    median: int  # micro-lamports per CU: the slots' price level before its wave and jitter
    hot_pct: int  # CU bid on each hot pool's accounts, % of the per-account limit
    hot_premium_pct: int  # what hot pool bids pay relative to the rest, %
    bundle_pct: int  # % of bids sent as bundles, with a tip on top of their price

    def to_json(self) -> dict[str, int | str]:
        return {
            "level": self.name,
            "demandPct": self.demand_pct,
            "medianMicroLamportsPerCu": self.median,
            "hotPoolPct": self.hot_pct,
            "hotPoolPremiumPct": self.hot_premium_pct,
            "bundlePct": self.bundle_pct,
        }


LEVELS: dict[str, Level] = {
    "busy": Level("busy", 70, 10_000, 50, 120, 10),
    "high": Level("high", 110, 50_000, 130, 150, 15),
    "extreme": Level("extreme", 200, 200_000, 200, 150, 20),
}
LEVEL_NAMES = (QUIET, *LEVELS)


@dataclass(frozen=True)
class Bid:
    """Virtual demand: `units` compute units bid at `price` (what orders it in the block)."""

    price: int  # micro-lamports per CU: what ranks it
    cu_price: int  # the compute unit price its transaction sets (what the fee cache sees)
    units: int
    hot: int  # the hot pool whose accounts it writes (index), or -1
    tip: int  # lamports to a tip account, 0 unless a bundle


def slot_price(seed: int, slot: int, median: int) -> int:
    """The slot's price level: the median, its slow wave and its jitter."""
    slow = value_noise(seed, "fees:slow", Decimal(slot) / SLOW_SLOTS)
    jitter = random.Random(f"{seed}:fees:jitter:{slot}").randint(-1000, 1000)
    wave = 1000 + int(slow * SLOW_PERMILLE)
    return median * wave * (1_000_000 + jitter * FAST_PERMILLE) // 1_000_000_000


def background(
    seed: int, slot: int, level: Level, block_cu: int, account_cu: int, hot_pools: int
) -> list[Bid]:
    """The slot's background bids at `level`, seeded by (seed, slot)."""
    rng = random.Random(f"{seed}:demand:{slot}")
    price = slot_price(seed, slot, level.median)
    hot_units = level.hot_pct * account_cu // 100
    hot_included = min(hot_units, account_cu) * hot_pools
    general = max(level.demand_pct * block_cu // 100 - hot_included, 0)
    bids: list[Bid] = []
    _fill(bids, rng, general, price, -1, level)
    hot_price = price * level.hot_premium_pct // 100
    for hot in range(hot_pools):
        _fill(bids, rng, hot_units, hot_price, hot, level)
    return bids


def _fill(
    bids: list[Bid], rng: random.Random, units: int, price: int, hot: int, level: Level
) -> None:
    while units > 0:
        size = min(rng.choice(UNIT_SIZES), units)
        units -= size
        cu_price = price * SPREAD_PERMILLE[rng.randrange(SPREAD_POINTS)] // 1000
        if rng.randrange(100) < level.bundle_pct:
            tip = max(cu_price * size * BUNDLE_TIP_PCT // 100_000_000, MIN_TIP_LAMPORTS)
            bids.append(Bid(cu_price, cu_price, size, hot, tip))
        else:
            bids.append(Bid(cu_price, cu_price, size, hot, 0))
