from decimal import Decimal
from fractions import Fraction

import pytest

from order_engine.routing import Router
from order_engine.tokens import resolve
from order_engine.venues import catalogue, market, pools
from order_engine.venues.base import Quote

T0 = 1_798_761_600_000


def test_reference_price_is_a_pure_function_of_seed_and_time():
    assert market.reference_usd(7, "SOL", Decimal(150), T0) == market.reference_usd(
        7, "SOL", Decimal(150), T0
    )
    assert market.reference_usd(7, "SOL", Decimal(150), T0) != market.reference_usd(
        8, "SOL", Decimal(150), T0
    )


def test_reference_moves_little_between_quote_and_landing_and_more_over_an_hour():
    def move_bps(dt_ms):
        a = market.reference_usd(7, "SOL", Decimal(150), T0)
        b = market.reference_usd(7, "SOL", Decimal(150), T0 + dt_ms)
        return abs(b / a - 1) * 10_000

    short = max(move_bps(2_500 + k * 997) for k in range(20))
    assert short < 60
    assert max(move_bps(3_600_000 * k) for k in range(1, 6)) > short


def test_stablecoins_stay_at_their_reference():
    assert market.reference_usd(7, "USDC", Decimal(1), T0 + 123_456) == Decimal(1)


@pytest.mark.parametrize("pool_id", ["raydium:SOL-USDC", "meteora:SOL-USDC"])
def test_venues_sit_within_five_percent_of_each_other(pool_id):
    raydium = catalogue.spec("raydium:SOL-USDC").target_mid(7, T0)
    meteora = catalogue.spec("meteora:SOL-USDC").target_mid(7, T0)
    assert abs(raydium / meteora - 1) <= Fraction(5, 100)


@pytest.mark.parametrize(
    ("pool_id", "shift"),
    [
        ("raydium:SOL-USDC", Fraction(97, 100)),
        ("raydium:SOL-USDC", Fraction(102, 100)),
        ("meteora:SOL-USDC", Fraction(97, 100)),
        ("meteora:SOL-USDC", Fraction(102, 100)),
        ("raydium:BONK-SOL", Fraction(95, 100)),
        # A stable pool's bins span ±0.69 %: targets stay inside its range.
        ("meteora:USDC-USDT", Fraction(996, 1000)),
        ("meteora:USDC-USDT", Fraction(1004, 1000)),
    ],
)
def test_arbitrage_brings_the_mid_to_the_target(pool_id, shift):
    spec = catalogue.spec(pool_id)
    state = spec.initial_state(7, T0)
    target = pools.mid_price(state) * shift
    moved = pools.arbitrage(state, target, T0 // 1000)
    error = abs(pools.mid_price(moved) / target - 1)
    # Within the fee band plus one bin (DLMM) or rounding (CPMM).
    bin_step = Fraction(spec.pair.bin_step, 10_000) if spec.venue == "meteora" else 0
    assert error <= pools.fee_band(state) + bin_step + Fraction(1, 10_000)


def test_arbitrage_leaves_a_pool_inside_its_fee_band_alone():
    state = catalogue.spec("raydium:SOL-USDC").initial_state(7, T0)
    assert pools.arbitrage(state, pools.mid_price(state) * Fraction(10_001, 10_000), 0) == state


class CurveVenue:
    """A venue whose quotes come from a seeded pool state, with no I/O."""

    def __init__(self, pool_id):
        self.name = pool_id.split(":")[0]
        self.pool_id = pool_id
        self.state = catalogue.spec(pool_id).initial_state(7, T0)

    def quote(self, token_in, token_out, amount_in):
        _spec, swap_for_y = catalogue.pool_for(self.name, token_in, token_out)
        out = pools.swap(self.state, amount_in, swap_for_y, T0 // 1000)
        return Quote(
            self.name,
            self.pool_id,
            token_in,
            token_out,
            amount_in,
            out.amount_out,
            out.fee,
            out.fee_bps,
            Decimal(out.price_impact_bps.numerator) / out.price_impact_bps.denominator,
            0,
            0,
            pools.output_function(self.state, swap_for_y, T0 // 1000),
        )


@pytest.mark.parametrize("usdc", [10, 5_000, 400_000, 3_000_000])
def test_router_regret_against_an_exhaustive_oracle_is_zero(usdc):
    usdc_token, sol = resolve("USDC"), resolve("SOL")
    raydium, meteora = CurveVenue("raydium:SOL-USDC"), CurveVenue("meteora:SOL-USDC")
    router = Router([raydium, meteora], split_threshold_bps=0, concurrent=False)
    amount = usdc * usdc_token.one
    decision = router.route(usdc_token, sol, amount)
    f = pools.output_function(raydium.state, False, T0 // 1000)
    g = pools.output_function(meteora.state, False, T0 // 1000)
    steps = 2_000
    oracle = max(
        (f(a) or 0) + (g(amount - a) or 0) for a in range(0, amount + 1, max(1, amount // steps))
    )
    # The oracle samples a grid; the router searches every atom near the optimum.
    assert decision.amount_out >= oracle
