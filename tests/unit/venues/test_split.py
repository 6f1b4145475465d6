"""Splitting one order between two venues: optimality against brute force, threshold logic."""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from order_engine.venues.math import InsufficientLiquidity, ZeroTradingTokens
from order_engine.venues.math.cpmm import CPMM_FEE_TIERS, ConstantProductPool
from order_engine.venues.math.dlmm import Bin, DlmmParameters, DlmmPool
from order_engine.venues.math.split import (
    OutputFunction,
    Split,
    best_single_venue,
    best_split,
    choose_allocation,
    improvement_bps,
    split_beats_single_venue,
    venue_output,
)

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)
NOW = 1_000


def cpmm_output(pool: ConstantProductPool) -> OutputFunction:
    return venue_output(lambda amount: pool.swap_exact_in(amount).amount_out)


def dlmm_output(pool: DlmmPool) -> OutputFunction:
    return venue_output(lambda amount: pool.swap_exact_in(amount, True, NOW).amount_out)


def brute_force_best_total(first: OutputFunction, second: OutputFunction, amount_in: int) -> int:
    """Best total over every allocation, the oracle for routing regret."""
    totals = []
    for amount_first in range(amount_in + 1):
        out_first, out_second = first(amount_first), second(amount_in - amount_first)
        if out_first is not None and out_second is not None:
            totals.append(out_first + out_second)
    if not totals:
        raise InsufficientLiquidity("oracle: nothing fills")
    return max(totals)


@st.composite
def small_cpmm_pools(draw: st.DrawFn) -> ConstantProductPool:
    return ConstantProductPool.raydium_cpmm(
        draw(st.integers(100, 10**6)),
        draw(st.integers(100, 10**6)),
        draw(st.sampled_from(CPMM_FEE_TIERS)),
    )


@st.composite
def small_dlmm_pools(draw: st.DrawFn) -> DlmmPool:
    """A few bins of Y below and at the active bin, some possibly empty: thin enough to run out."""
    params = DlmmParameters(
        bin_step=draw(st.sampled_from([1, 10, 25, 100])),
        base_factor=10_000,
        variable_fee_control=draw(st.sampled_from([0, 40_000, 10**6])),
    )
    active_id = draw(st.integers(-100, 100))
    amounts = draw(st.lists(st.integers(0, 300), min_size=1, max_size=8))
    bins = {active_id - depth: Bin(0, amount) for depth, amount in enumerate(amounts)}
    return DlmmPool(params, active_id, bins)


venue_outputs = st.one_of(small_cpmm_pools().map(cpmm_output), small_dlmm_pools().map(dlmm_output))


def concave_output(marginals: list[int]) -> OutputFunction:
    """Exactly discrete-concave output: non-increasing marginal outputs, then flat."""
    ordered = sorted(marginals, reverse=True)
    totals = [0, *accumulate(ordered)]
    return lambda amount: totals[min(amount, len(ordered))]


# --- optimality ----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(first=venue_outputs, second=venue_outputs, amount_in=st.integers(1, 200))
def test_best_split_matches_exhaustive_search_on_small_amounts(
    first: OutputFunction, second: OutputFunction, amount_in: int
) -> None:
    try:
        oracle = brute_force_best_total(first, second, amount_in)
    except InsufficientLiquidity:
        with pytest.raises(InsufficientLiquidity):
            best_split(first, second, amount_in)
        return

    split = best_split(first, second, amount_in)

    assert split.amount_out == oracle  # routing regret 0
    assert split.amount_first + split.amount_second == amount_in


@PROPERTY_SETTINGS
@given(
    first=st.lists(st.integers(0, 1_000), min_size=1, max_size=400).map(concave_output),
    second=st.lists(st.integers(0, 1_000), min_size=1, max_size=400).map(concave_output),
    amount_in=st.integers(1, 800),
)
def test_ternary_search_finds_the_exact_optimum_of_concave_outputs(
    first: OutputFunction, second: OutputFunction, amount_in: int
) -> None:
    split = best_split(first, second, amount_in, exhaustive_up_to=0, refine_window=2)

    assert split.amount_out == brute_force_best_total(first, second, amount_in)


def test_ternary_search_on_real_pools_is_within_two_atoms_of_brute_force() -> None:
    # Whole-atom rounding makes real outputs only approximately concave (each output is floored,
    # so the sum carries up to ~2 atoms of noise) and a noisy comparison can leave the optimum
    # behind by that much; the final window scan usually recovers it. Fixed seed: an exhaustive
    # oracle over 1_500 allocations is too slow for a property test.
    rng = random.Random(20_240_601)
    regrets = []
    for _ in range(25):
        first = ConstantProductPool.raydium_cpmm(
            rng.randint(10**4, 10**6), rng.randint(10**4, 10**6), 2_500
        )
        second = ConstantProductPool.raydium_cpmm(
            rng.randint(10**4, 10**6), rng.randint(10**4, 10**6), 100
        )
        amount_in = rng.randint(300, 1_500)
        f, g = cpmm_output(first), cpmm_output(second)
        found = best_split(f, g, amount_in, exhaustive_up_to=0)
        regrets.append(brute_force_best_total(f, g, amount_in) - found.amount_out)

    assert max(regrets) <= 2


@PROPERTY_SETTINGS
@given(
    reserves=st.lists(st.integers(10**9, 10**13), min_size=4, max_size=4),
    fee_tiers=st.lists(st.sampled_from(CPMM_FEE_TIERS), min_size=2, max_size=2),
    amount_in=st.integers(10**3, 10**12),
)
def test_split_is_never_worse_than_the_best_single_venue(
    reserves: list[int], fee_tiers: list[int], amount_in: int
) -> None:
    first = cpmm_output(ConstantProductPool.raydium_cpmm(reserves[0], reserves[1], fee_tiers[0]))
    second = cpmm_output(ConstantProductPool.raydium_cpmm(reserves[2], reserves[3], fee_tiers[1]))

    split = best_split(first, second, amount_in)
    single = best_single_venue(first, second, amount_in)

    assert single is not None
    assert split.amount_out >= single.amount_out


def test_large_order_split_beats_every_allocation_on_a_coarse_grid() -> None:
    # docs/venues.md's deep Raydium CPMM (40k SOL / 6M USDC) against a DLMM ladder at 150 USDC/SOL.
    sol, usdc = 10**9, 10**6
    raydium = ConstantProductPool.raydium_cpmm(40_000 * sol, 6_000_000 * usdc, 2_500)
    params = DlmmParameters(bin_step=10, base_factor=10_000, variable_fee_control=40_000)
    bins = {-1_898 - depth: Bin(0, 50_000 * usdc) for depth in range(61)}
    meteora = DlmmPool(params, -1_898, bins)
    first, second = cpmm_output(raydium), dlmm_output(meteora)
    amount_in = 2_000 * sol

    split = best_split(first, second, amount_in)

    grid = [amount_in * step // 1_000 for step in range(1_001)]
    grid_best = max(first(a) + second(amount_in - a) for a in grid)  # type: ignore[operator]
    assert split.uses_both_venues
    assert split.amount_out >= grid_best


# --- feasibility ---------------------------------------------------------------------------------


def thin_dlmm(amount_y: int) -> DlmmPool:
    return DlmmPool(DlmmParameters(bin_step=10, base_factor=10_000), 0, {0: Bin(0, amount_y)})


def test_split_fills_an_order_that_no_single_venue_can_fill() -> None:
    first, second = dlmm_output(thin_dlmm(1_000_000)), dlmm_output(thin_dlmm(1_000_000))

    chosen = choose_allocation(first, second, 1_500_000, min_improvement_bps=3)

    assert best_single_venue(first, second, 1_500_000) is None
    assert chosen.uses_both_venues
    assert chosen.amount_out >= 1_490_000


def test_no_allocation_fills_raises_no_liquidity() -> None:
    first, second = dlmm_output(thin_dlmm(1_000)), dlmm_output(thin_dlmm(1_000))

    with pytest.raises(InsufficientLiquidity) as raised:
        best_split(first, second, 10**6)

    assert raised.value.code == "NO_LIQUIDITY"


def test_venue_output_maps_no_liquidity_to_none_and_dust_to_zero() -> None:
    def quote(amount: int) -> int:
        if amount > 100:
            raise InsufficientLiquidity("empty")
        if amount < 10:
            raise ZeroTradingTokens("dust")
        return amount

    output = venue_output(quote)

    assert [output(0), output(5), output(50), output(500)] == [0, 0, 50, None]


# --- threshold -----------------------------------------------------------------------------------


def twin_pools_quote(amount_in: int) -> tuple[Split, Split | None]:
    pool = ConstantProductPool.raydium_cpmm(10**12, 10**12, 100)
    output = cpmm_output(pool)
    return best_split(output, output, amount_in), best_single_venue(output, output, amount_in)


def test_twin_pools_split_an_order_about_evenly_within_rounding_noise() -> None:
    amount_in = 10**10
    output = cpmm_output(ConstantProductPool.raydium_cpmm(10**12, 10**12, 100))
    even_total = 2 * output(amount_in // 2)  # type: ignore[operator]

    split, _ = twin_pools_quote(amount_in)

    # Near the optimum the total is flat to within the 1-atom floors of the two outputs over
    # millions of atoms, so the search may stop anywhere in that plateau: it lands within 0.1 %
    # of the even split and at most 2 atoms (2e-6 bps) short of its output.
    assert abs(split.amount_first - split.amount_second) <= amount_in // 1_000
    assert split.amount_out >= even_total - 2


def test_split_is_chosen_only_when_it_beats_the_single_venue_by_more_than_the_threshold() -> None:
    # 1 % of a pool in one venue costs ~1 % impact; two venues halve that: ~50 bps better.
    split, single = twin_pools_quote(10**10)
    assert single is not None
    gain = improvement_bps(split.amount_out, single.amount_out)
    assert 45 < gain < 55

    assert split_beats_single_venue(split, single, min_improvement_bps=3)
    assert not split_beats_single_venue(split, single, min_improvement_bps=60)


def test_tiny_order_stays_on_one_venue_under_a_three_bps_threshold() -> None:
    pool = ConstantProductPool.raydium_cpmm(10**12, 10**12, 100)
    output = cpmm_output(pool)

    chosen = choose_allocation(output, output, 10**6, min_improvement_bps=3)

    assert not chosen.uses_both_venues


def test_improvement_is_exact_basis_points() -> None:
    assert improvement_bps(10_003, 10_000) == 3
    assert improvement_bps(20_001, 20_000) == Fraction(1, 2)


def test_single_venue_candidate_never_counts_as_a_split() -> None:
    single = Split(100, 0, 1_000)

    assert not split_beats_single_venue(single, Split(0, 100, 900), min_improvement_bps=0)
