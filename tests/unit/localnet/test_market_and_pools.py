"""The seeded market and the pool operations the localnet runs at every slot and landing."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from order_engine.localnet import catalogue, market, pools
from order_engine.localnet.market import Market

T0 = 1_798_761_600_000
SPECS = {spec.pool_id: (spec, pair) for spec, pair in catalogue.genesis()}


def _market(seed: int = 7) -> Market:
    return Market(seed, catalogue.REFERENCE_USD)


def _initial(pool_id: str) -> pools.Pool:
    spec, pair = SPECS[pool_id]
    return catalogue.initial_state(spec, pair, _market(), T0)


def test_reference_price_is_a_pure_function_of_seed_and_time():
    assert market.walk_usd(7, "SOL", Decimal(150), T0) == market.walk_usd(
        7, "SOL", Decimal(150), T0
    )
    assert market.walk_usd(7, "SOL", Decimal(150), T0) != market.walk_usd(
        8, "SOL", Decimal(150), T0
    )


def test_reference_moves_little_between_quote_and_landing_and_more_over_an_hour():
    def move_bps(dt_ms: int) -> Decimal:
        a = market.walk_usd(7, "SOL", Decimal(150), T0)
        b = market.walk_usd(7, "SOL", Decimal(150), T0 + dt_ms)
        return abs(b / a - 1) * 10_000

    short = max(move_bps(2_500 + k * 997) for k in range(20))
    assert short < 60
    assert max(move_bps(3_600_000 * k) for k in range(1, 6)) > short


def test_stablecoins_stay_at_their_reference():
    assert _market().reference_usd("USDC", T0 + 123_456) == Decimal(1)


def test_set_price_overrides_the_walk_from_then_on():
    prices = _market()
    prices.set_price("SOL", "USDC", Decimal(250), T0)
    assert prices.price("SOL", "USDC", T0) == Decimal(250)
    later = prices.price("SOL", "USDC", T0 + 2_000)
    assert abs(later / Decimal(250) - 1) < Decimal("0.01")


def test_venues_sit_within_five_percent_of_each_other():
    prices = _market()
    raydium = SPECS["raydium:SOL-USDC"][0].target_mid(prices, T0)
    meteora = SPECS["meteora:SOL-USDC"][0].target_mid(prices, T0)
    assert abs(raydium / meteora - 1) <= Fraction(5, 100)


@pytest.mark.parametrize(
    ("pool_id", "shift"),
    [
        ("raydium:SOL-USDC", Fraction(97, 100)),
        ("raydium:SOL-USDC", Fraction(102, 100)),
        ("meteora:SOL-USDC", Fraction(97, 100)),
        ("meteora:SOL-USDC", Fraction(102, 100)),
        ("raydium:BONK-SOL", Fraction(95, 100)),
        ("meteora:USDC-USDT", Fraction(996, 1000)),
        ("meteora:USDC-USDT", Fraction(1004, 1000)),
        # Beyond the DLMM pool's bins: its liquidity is re-centred on the target.
        ("meteora:SOL-USDC", Fraction(160, 100)),
        ("meteora:USDC-USDT", Fraction(103, 100)),
    ],
)
def test_arbitrage_brings_the_mid_to_the_target(pool_id, shift):
    spec, _ = SPECS[pool_id]
    state = _initial(pool_id)
    target = pools.mid_price(state) * shift
    moved = pools.arbitrage(state, target, T0 // 1000)
    error = abs(pools.mid_price(moved) / target - 1)
    bin_step = Fraction(spec.bin_step, 10_000) if spec.venue == "meteora" else 0
    assert error <= pools.fee_band(state) + bin_step + Fraction(1, 10_000)


def test_recentring_keeps_the_pool_value():
    state = _initial("meteora:SOL-USDC")
    target = pools.mid_price(state) * 2
    moved = pools.arbitrage(state, target, T0 // 1000)
    x0, y0 = pools.reserves(state)
    x1, y1 = pools.reserves(moved)
    # Value in Y at the new price: the arbitrage sold all X at below-target prices, so the pool
    # holds a bit less than 2·x0·mid + y0, and never more.
    assert x1 * target + y1 <= x0 * target + y0
    assert x1 * target + y1 > (x0 * target + y0) * Fraction(7, 10)


def test_arbitrage_leaves_a_pool_inside_its_fee_band_alone():
    state = _initial("raydium:SOL-USDC")
    assert pools.arbitrage(state, pools.mid_price(state) * Fraction(10_001, 10_000), 0) is state


@pytest.mark.parametrize("pool_id", ["raydium:SOL-USDC", "meteora:BONK-SOL"])
def test_snapshot_round_trip(pool_id):
    state = _initial(pool_id)
    swapped = pools.swap(state, 10**9, True, T0 // 1000).pool
    assert pools.from_json(pools.to_json(swapped)) == swapped


def test_a_drained_pool_cannot_trade_and_is_not_arbitraged():
    state = pools.drained(_initial("meteora:SOL-USDC"))
    assert pools.reserves(state) == (0, 0)
    assert pools.arbitrage(state, Fraction(1), T0 // 1000) is state
    with pytest.raises(pools.InsufficientLiquidity):
        pools.swap(state, 10**9, True, T0 // 1000)
