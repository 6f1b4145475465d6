"""Meteora DLMM math: program price vectors, fee vectors, docs/venues.md's worked sample, and
properties of the bin walk."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from order_engine.venues.math import InsufficientLiquidity, ZeroTradingTokens
from order_engine.venues.math.dlmm import (
    FEE_PRECISION,
    MAX_FEE_RATE,
    ONE_Q64,
    Bin,
    DlmmParameters,
    DlmmPool,
    VolatilityState,
    bin_id_at_or_below_price,
    exact_price_from_id,
    price_q64_from_id,
    q64_to_fraction,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

# the worked sample: SOL(9)/USDC(6), bin_step 10, base 0.10 %, vfc 40_000, active id -1898
# (about 150 USDC/SOL); 10_000 USDC in the active bin, 20_000 USDC per bin below it, 130 SOL
# per bin above it.
SOL = 10**9
USDC = 10**6
SAMPLE_ACTIVE_ID = -1_898
SAMPLE_NOW = 1_000
SAMPLE_PARAMS = DlmmParameters(
    bin_step=10,
    base_factor=10_000,
    variable_fee_control=40_000,
    filter_period=30,
    decay_period=600,
    reduction_factor=5_000,
    max_volatility_accumulator=350_000,
)


def sample_pool(params: DlmmParameters = SAMPLE_PARAMS, bins_each_side: int = 60) -> DlmmPool:
    bins = {}
    for offset in range(-bins_each_side, bins_each_side + 1):
        if offset < 0:
            bins[SAMPLE_ACTIVE_ID + offset] = Bin(0, 20_000 * USDC)
        elif offset > 0:
            bins[SAMPLE_ACTIVE_ID + offset] = Bin(130 * SOL, 0)
    bins[SAMPLE_ACTIVE_ID] = Bin(0, 10_000 * USDC)
    return DlmmPool(params, SAMPLE_ACTIVE_ID, bins)


def ladder_pool(params: DlmmParameters, bins_each_side: int, amount: int) -> DlmmPool:
    """`amount` Y in the active bin and every bin below, `amount` X in every bin above."""
    bins = {
        i: Bin(amount if i > 0 else 0, amount if i <= 0 else 0)
        for i in range(-bins_each_side, bins_each_side + 1)
    }
    return DlmmPool(params, 0, bins)


# --- prices --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bin_id", "expected_decimal_1e12"),
    [(5_555, 257_810_379_178_651), (-5_555, 3_878_819_786)],
)
def test_q64_price_matches_the_meteora_program_unit_tests(
    bin_id: int, expected_decimal_1e12: int
) -> None:
    # MeteoraAg/dlmm-sdk: programs/lb_clmm/src/math/price_math.rs, to_decimal = price*1e12 >> 64.
    price = price_q64_from_id(bin_id, 10)

    assert (price * 10**12) >> 64 == expected_decimal_1e12


def test_price_of_bin_zero_is_exactly_one() -> None:
    assert price_q64_from_id(0, 25) == ONE_Q64


@pytest.mark.parametrize(
    ("bin_step", "bin_id"),
    [(step, i) for step in (1, 10, 25) for i in (-5_000, -1_898, -1, 1, 777, 5_000)]
    + [(100, i) for i in (-1_898, -500, 500, 1_898)]
    + [(400, i) for i in (-500, -100, 100, 500)],
)
def test_q64_price_is_within_fixed_point_rounding_of_the_exact_power(
    bin_step: int, bin_id: int
) -> None:
    q64 = q64_to_fraction(price_q64_from_id(bin_id, bin_step))
    exact = exact_price_from_id(bin_id, bin_step)

    # The program works on the power below one, whose resolution is 2**-64 absolute, so the
    # relative error scales with max(P, 1/P); repeated squaring multiplies the error of the
    # floored base by up to |id|. Hence this bound, not a fixed number of digits.
    bound = Fraction(abs(bin_id) + 64, ONE_Q64) * max(exact, 1 / exact)
    assert abs(q64 - exact) / exact <= bound


def test_price_that_does_not_fit_q64_64_is_refused() -> None:
    with pytest.raises(ValueError, match="Q64.64"):
        price_q64_from_id(-5_000, 100)
    with pytest.raises(ValueError, match="Q64.64"):
        DlmmPool(DlmmParameters(bin_step=400, base_factor=10_000), 0, {1_200: Bin(1, 0)})


def test_prices_increase_with_bin_id() -> None:
    prices = [price_q64_from_id(i, 10) for i in range(-2_000, -1_800)]

    assert prices == sorted(prices)
    assert len(set(prices)) == len(prices)


def test_150_usdc_per_sol_lies_between_bins_minus_1899_and_minus_1898() -> None:
    atom_price = Fraction(150 * USDC, SOL)

    bin_id = bin_id_at_or_below_price(atom_price, 10)

    assert bin_id == -1_899
    assert q64_to_fraction(price_q64_from_id(-1_898, 10)) > atom_price


# --- fees (docs/venues.md, golden vectors) ------------------------------------------------------


@pytest.mark.parametrize(
    ("bin_step", "expected_percent"),
    [(1, Fraction(1, 100)), (10, Fraction(10, 100)), (25, Fraction(25, 100)), (100, Fraction(1))],
)
def test_base_fee_golden_table_for_base_factor_10_000(
    bin_step: int, expected_percent: Fraction
) -> None:
    params = DlmmParameters(bin_step=bin_step, base_factor=10_000)

    assert Fraction(params.base_fee_rate(), FEE_PRECISION) * 100 == expected_percent


@pytest.mark.parametrize(
    ("bins_moved", "expected_percent"),
    [(5, Fraction(1, 100)), (10, Fraction(4, 100)), (30, Fraction(36, 100))],
)
def test_variable_fee_golden_vectors_for_bin_step_10_and_vfc_40_000(
    bins_moved: int, expected_percent: Fraction
) -> None:
    volatility_accumulator = bins_moved * 10_000

    variable = SAMPLE_PARAMS.variable_fee_rate(volatility_accumulator)

    assert Fraction(variable, FEE_PRECISION) * 100 == expected_percent


@pytest.mark.parametrize(
    ("bins_moved", "expected_variable_percent"),
    [(5, Fraction(1, 100)), (10, Fraction(4, 100)), (30, Fraction(36, 100))],
)
def test_swap_crossing_bins_raises_the_next_fee_by_the_golden_variable_fee(
    bins_moved: int, expected_variable_percent: Fraction
) -> None:
    amount = 1_000_000
    pool = ladder_pool(SAMPLE_PARAMS, bins_each_side=40, amount=amount)
    # Drain the active bin and `bins_moved - 1` more, then touch the next bin with a sliver.
    drained = pool.swap_exact_out(amount * bins_moved + 1, swap_for_y=True, now=SAMPLE_NOW)
    assert drained.bins_crossed == bins_moved

    next_rate = drained.pool.fee_rate_at(SAMPLE_NOW + 5)  # inside the 30 s filter period

    variable = next_rate - SAMPLE_PARAMS.base_fee_rate()
    assert Fraction(variable, FEE_PRECISION) * 100 == expected_variable_percent


def test_fee_rate_is_capped_at_ten_percent() -> None:
    params = DlmmParameters(bin_step=100, base_factor=10_000, variable_fee_control=10**7)

    assert params.total_fee_rate(350_000) == MAX_FEE_RATE == FEE_PRECISION // 10


def test_volatility_decays_after_filter_period_and_resets_after_decay_period() -> None:
    state = VolatilityState(
        volatility_accumulator=70_000, index_reference=-1_898, last_update_timestamp=1_000
    )

    within_filter = state.with_references_updated(SAMPLE_PARAMS, -1_905, now=1_029)
    decayed = state.with_references_updated(SAMPLE_PARAMS, -1_905, now=1_030)
    reset = state.with_references_updated(SAMPLE_PARAMS, -1_905, now=1_600)

    assert within_filter == state
    assert (decayed.volatility_reference, decayed.index_reference) == (35_000, -1_905)
    assert (reset.volatility_reference, reset.index_reference) == (0, -1_905)


# --- Appendix A worked sample --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sol_in", "printed_usdc_cents", "exact_out", "bins_crossed"),
    [
        (1, 14_986, 149_860_243, 0),
        (100, 1_498_102, 14_981_023_312, 1),
        (1_000, 14_929_295, 149_292_949_885, 7),
    ],
)
def test_selling_sol_matches_the_worked_sample(
    sol_in: int, printed_usdc_cents: int, exact_out: int, bins_crossed: int
) -> None:
    result = sample_pool().swap_exact_in(sol_in * SOL, swap_for_y=True, now=SAMPLE_NOW)

    # The note prints USDC to the cent (10_000 atoms), so half a cent is the tolerance against it.
    assert abs(result.amount_out - printed_usdc_cents * 10_000) <= 5_000
    # The note's sketch used float prices, which can land one atom either side of a floor; for
    # these three trades the Q64.64 result equals the sketch's output exactly, pinned here.
    assert result.amount_out == exact_out
    assert result.bins_crossed == bins_crossed


def test_first_sample_trade_pays_the_ten_bps_base_fee() -> None:
    result = sample_pool().swap_exact_in(SOL, swap_for_y=True, now=SAMPLE_NOW)

    assert result.fee == SOL // 1_000


def test_selling_1000_sol_leaves_v_a_70_000_and_a_0_1196_percent_fee_ten_seconds_later() -> None:
    after = sample_pool().swap_exact_in(1_000 * SOL, swap_for_y=True, now=SAMPLE_NOW).pool

    assert after.volatility.volatility_accumulator == 70_000
    assert Fraction(after.fee_rate_at(SAMPLE_NOW + 10), FEE_PRECISION) * 100 == Fraction(
        1_196, 10_000
    )


# --- directions, errors, immutability ------------------------------------------------------------


def test_buying_sol_with_usdc_walks_the_bins_upwards() -> None:
    pool = sample_pool()

    result = pool.swap_exact_in(50_000 * USDC, swap_for_y=False, now=SAMPLE_NOW)

    # The active bin holds no SOL, so the walk starts one bin up: 50k USDC is ~333 SOL, 3 bins.
    assert result.pool.active_id == SAMPLE_ACTIVE_ID + 3
    assert 332 * SOL < result.amount_out < 333 * SOL
    # The first SOL bin is emptied for ceil(130 SOL * P(-1897)) = ceil(19_520_834_255.997) USDC
    # atoms: the whole-bin price rounds up, against the trader.
    assert result.pool.bins[SAMPLE_ACTIVE_ID + 1] == Bin(0, 19_520_834_256)


@pytest.mark.parametrize("swap_for_y", [True, False])
def test_bin_walk_running_out_raises_no_liquidity(swap_for_y: bool) -> None:
    pool = sample_pool(bins_each_side=3)

    with pytest.raises(InsufficientLiquidity) as raised:
        pool.swap_exact_in(10**9 * SOL, swap_for_y=swap_for_y, now=SAMPLE_NOW)

    assert raised.value.code == "NO_LIQUIDITY"


def test_exact_out_beyond_all_bins_raises_no_liquidity() -> None:
    pool = sample_pool(bins_each_side=3)

    with pytest.raises(InsufficientLiquidity):
        pool.swap_exact_out(pool.total_reserve_out(True) + 1, swap_for_y=True, now=SAMPLE_NOW)


def test_exact_out_of_every_reachable_atom_empties_the_pool_side() -> None:
    pool = sample_pool(bins_each_side=3)
    everything = pool.total_reserve_out(True)

    result = pool.swap_exact_out(everything, swap_for_y=True, now=SAMPLE_NOW)

    assert result.amount_out == everything == 70_000 * USDC
    assert result.pool.total_reserve_out(True) == 0


def test_input_too_small_to_buy_an_atom_raises_amount_too_small() -> None:
    with pytest.raises(ZeroTradingTokens) as raised:
        sample_pool().swap_exact_in(1, swap_for_y=True, now=SAMPLE_NOW)

    assert raised.value.code == "AMOUNT_TOO_SMALL"


def test_swap_returns_a_new_pool_and_leaves_the_original_untouched() -> None:
    pool = sample_pool()
    before = dict(pool.bins)

    result = pool.swap_exact_in(1_000 * SOL, swap_for_y=True, now=SAMPLE_NOW)

    assert dict(pool.bins) == before
    assert pool.active_id == SAMPLE_ACTIVE_ID
    assert pool.volatility == VolatilityState()
    assert result.pool.active_id == SAMPLE_ACTIVE_ID - 7
    with pytest.raises(TypeError):
        pool.bins[0] = Bin(1, 1)  # type: ignore[index]


def test_clock_going_backwards_is_refused() -> None:
    after = sample_pool().swap_exact_in(SOL, swap_for_y=True, now=SAMPLE_NOW).pool

    with pytest.raises(ValueError, match="backwards"):
        after.swap_exact_in(SOL, swap_for_y=True, now=SAMPLE_NOW - 1)


def test_protocol_share_is_floored_per_bin() -> None:
    params = DlmmParameters(bin_step=10, base_factor=10_000, protocol_share=2_000)
    pool = sample_pool(params)

    result = pool.swap_exact_in(SOL, swap_for_y=True, now=SAMPLE_NOW)

    assert result.protocol_fee == result.fee * 2_000 // 10_000 == 200_000


# --- properties ----------------------------------------------------------------------------------


@st.composite
def dlmm_pools(draw: st.DrawFn) -> DlmmPool:
    """Random pools: any bin step, fee parameters, ladder width and (sometimes empty) bins."""
    params = DlmmParameters(
        bin_step=draw(st.sampled_from([1, 10, 25, 100, 400])),
        base_factor=draw(st.integers(min_value=0, max_value=20_000)),
        variable_fee_control=draw(st.integers(min_value=0, max_value=10**7)),
        max_volatility_accumulator=draw(st.integers(min_value=0, max_value=500_000)),
        protocol_share=draw(st.integers(min_value=0, max_value=2_500)),
    )
    # Every bin of the ladder must have a Q64.64 price, which limits ids at bin_step 400.
    active_id = draw(st.integers(min_value=-600, max_value=600))
    width = draw(st.integers(min_value=0, max_value=12))
    amounts = st.integers(min_value=0, max_value=10**12)
    bins = {}
    for bin_id in range(active_id - width, active_id + width + 1):
        amount_x = draw(amounts) if bin_id >= active_id else 0
        amount_y = draw(amounts) if bin_id <= active_id else 0
        bins[bin_id] = Bin(amount_x, amount_y)
    volatility = VolatilityState(
        volatility_accumulator=draw(st.integers(0, params.max_volatility_accumulator)),
        index_reference=active_id + draw(st.integers(-20, 20)),
    )
    return DlmmPool(params, active_id, bins, volatility)


swap_amounts = st.integers(min_value=1, max_value=10**13)
elapsed_seconds = st.integers(min_value=0, max_value=1_000)


def output_or_none(pool: DlmmPool, amount_in: int, swap_for_y: bool, now: int) -> int | None:
    """0 when too small to trade, None when the pool cannot fill it."""
    try:
        return pool.swap_exact_in(amount_in, swap_for_y, now).amount_out
    except ZeroTradingTokens:
        return 0
    except InsufficientLiquidity:
        return None


@PROPERTY_SETTINGS
@given(
    pool=dlmm_pools(),
    smaller=swap_amounts,
    extra=swap_amounts,
    swap_for_y=st.booleans(),
    now=elapsed_seconds,
)
def test_output_is_monotone_non_decreasing_in_input(
    pool: DlmmPool, smaller: int, extra: int, swap_for_y: bool, now: int
) -> None:
    small_out = output_or_none(pool, smaller, swap_for_y, now)
    large_out = output_or_none(pool, smaller + extra, swap_for_y, now)

    if small_out is None:
        assert large_out is None  # what the pool cannot fill, it cannot fill with more either
    elif large_out is not None:
        assert small_out <= large_out


@PROPERTY_SETTINGS
@given(pool=dlmm_pools(), amount_in=swap_amounts, swap_for_y=st.booleans(), now=elapsed_seconds)
def test_total_out_never_exceeds_the_reserves_of_the_traversed_bins(
    pool: DlmmPool, amount_in: int, swap_for_y: bool, now: int
) -> None:
    try:
        result = pool.swap_exact_in(amount_in, swap_for_y, now)
    except (ZeroTradingTokens, InsufficientLiquidity):
        return
    low, high = sorted((pool.active_id, result.pool.active_id))
    traversed = sum(b.reserve_out(swap_for_y) for i, b in pool.bins.items() if low <= i <= high)

    assert result.amount_out <= traversed
    assert result.bins_crossed == high - low


@PROPERTY_SETTINGS
@given(pool=dlmm_pools(), amount_in=swap_amounts, swap_for_y=st.booleans(), now=elapsed_seconds)
def test_reserves_change_by_exactly_the_net_input_and_the_output(
    pool: DlmmPool, amount_in: int, swap_for_y: bool, now: int
) -> None:
    try:
        result = pool.swap_exact_in(amount_in, swap_for_y, now)
    except (ZeroTradingTokens, InsufficientLiquidity):
        return
    before_x = sum(b.amount_x for b in pool.bins.values())
    before_y = sum(b.amount_y for b in pool.bins.values())
    after_x = sum(b.amount_x for b in result.pool.bins.values())
    after_y = sum(b.amount_y for b in result.pool.bins.values())
    net_in = result.amount_in - result.fee

    assert result.amount_in == amount_in
    if swap_for_y:
        assert (after_x, after_y) == (before_x + net_in, before_y - result.amount_out)
    else:
        assert (after_x, after_y) == (before_x - result.amount_out, before_y + net_in)


@PROPERTY_SETTINGS
@given(pool=dlmm_pools(), amount_in=swap_amounts, swap_for_y=st.booleans(), now=elapsed_seconds)
def test_fee_rate_never_exceeds_ten_percent(
    pool: DlmmPool, amount_in: int, swap_for_y: bool, now: int
) -> None:
    assert pool.fee_rate_at(now) <= MAX_FEE_RATE
    try:
        result = pool.swap_exact_in(amount_in, swap_for_y, now)
    except (ZeroTradingTokens, InsufficientLiquidity):
        return
    assert result.pool.fee_rate_at(now) <= MAX_FEE_RATE
    # Per bin the fee is ceil(rate * amount); with at most one rounding atom per bin touched.
    assert result.fee * 10 <= result.amount_in + 10 * (result.bins_crossed + 1)


@PROPERTY_SETTINGS
@given(
    pool=dlmm_pools(),
    trades=st.lists(st.tuples(swap_amounts, st.booleans(), st.integers(0, 120)), max_size=6),
)
def test_volatility_accumulator_never_exceeds_its_maximum(
    pool: DlmmPool, trades: list[tuple[int, bool, int]]
) -> None:
    now = 0
    for amount_in, swap_for_y, wait in trades:
        now += wait
        try:
            pool = pool.swap_exact_in(amount_in, swap_for_y, now).pool
        except (ZeroTradingTokens, InsufficientLiquidity):
            continue
        assert pool.volatility.volatility_accumulator <= pool.params.max_volatility_accumulator


@PROPERTY_SETTINGS
@given(pool=dlmm_pools(), amount_out=swap_amounts, swap_for_y=st.booleans(), now=elapsed_seconds)
def test_exact_out_then_exact_in_never_yields_less_than_asked(
    pool: DlmmPool, amount_out: int, swap_for_y: bool, now: int
) -> None:
    try:
        quoted = pool.swap_exact_out(amount_out, swap_for_y, now)
    except InsufficientLiquidity:
        return

    received = pool.swap_exact_in(quoted.amount_in, swap_for_y, now)

    assert received.amount_out >= amount_out == quoted.amount_out


@given(pool=dlmm_pools(), amount_in=swap_amounts, swap_for_y=st.booleans(), now=elapsed_seconds)
def test_the_quote_only_walk_pays_exactly_what_the_swap_pays(
    pool: DlmmPool, amount_in: int, swap_for_y: bool, now: int
) -> None:
    try:
        expected: int | type[Exception] = pool.swap_exact_in(amount_in, swap_for_y, now).amount_out
    except (ZeroTradingTokens, InsufficientLiquidity) as exc:
        expected = type(exc)
    try:
        got: int | type[Exception] = pool.amount_out_exact_in(amount_in, swap_for_y, now)
    except (ZeroTradingTokens, InsufficientLiquidity) as exc:
        got = type(exc)
    assert got == expected


@pytest.mark.parametrize(
    ("amount", "swap_for_y"), [(SOL // 10, True), (1_000 * SOL, True), (50_000 * USDC, False)]
)
def test_the_pool_after_a_swap_is_the_one_the_checked_constructor_builds(amount, swap_for_y):
    # The pool a walk returns skips __post_init__; built the checked way it is the same pool,
    # and the next swap on either gives the same answer.
    after = sample_pool().swap_exact_in(amount, swap_for_y, SAMPLE_NOW).pool
    checked = DlmmPool(after.params, after.active_id, dict(after.bins), after.volatility)
    assert after == checked
    assert after.total_reserve_out(swap_for_y) == checked.total_reserve_out(swap_for_y)
    again = (SOL if swap_for_y else 100 * USDC, swap_for_y, SAMPLE_NOW + 1)
    assert after.swap_exact_in(*again) == checked.swap_exact_in(*again)
