"""Raydium constant-product math: golden vectors (docs/venues.md) and invariants."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from order_engine.venues.math import InsufficientLiquidity, InvalidAmount, ZeroTradingTokens
from order_engine.venues.math.cpmm import CPMM_FEE_TIERS, ConstantProductPool

# docs/venues.md, golden vectors: reserves 1e12 / 2e12, 1e9 in at 0.25 %.
GOLDEN_X = 10**12
GOLDEN_Y = 2 * 10**12
GOLDEN_IN = 10**9
GOLDEN_OUT = 1_993_011_970
GOLDEN_FEE = 2_500_000

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)

reserves = st.integers(min_value=1, max_value=10**15)
amounts = st.integers(min_value=1, max_value=10**13)
directions = st.booleans()


@st.composite
def pools(draw: st.DrawFn) -> ConstantProductPool:
    """CPMM at any tier or AMM v4, optionally with a protocol/fund share of the fee."""
    x, y = draw(reserves), draw(reserves)
    if draw(st.booleans()):
        return ConstantProductPool.raydium_amm_v4(x, y, draw(st.sampled_from([0, 120_000])))
    return ConstantProductPool.raydium_cpmm(
        x,
        y,
        draw(st.sampled_from(CPMM_FEE_TIERS)),
        protocol_fee_rate=draw(st.sampled_from([0, 120_000])),
        fund_fee_rate=draw(st.sampled_from([0, 40_000])),
    )


def output_or_zero(pool: ConstantProductPool, amount_in: int, swap_for_y: bool) -> int:
    try:
        return pool.swap_exact_in(amount_in, swap_for_y).amount_out
    except ZeroTradingTokens:
        return 0


# --- golden vectors ------------------------------------------------------------------------------


def test_exact_in_matches_raydium_golden_vector() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y, trade_fee_rate=2_500)

    result = pool.swap_exact_in(GOLDEN_IN)

    assert (result.amount_in, result.amount_out, result.fee) == (GOLDEN_IN, GOLDEN_OUT, GOLDEN_FEE)
    assert (result.pool.reserve_x, result.pool.reserve_y) == (
        GOLDEN_X + GOLDEN_IN,
        GOLDEN_Y - GOLDEN_OUT,
    )


def test_amm_v4_fee_of_25_over_10_000_gives_the_same_golden_vector() -> None:
    pool = ConstantProductPool.raydium_amm_v4(GOLDEN_X, GOLDEN_Y)

    result = pool.swap_exact_in(GOLDEN_IN)

    assert (result.amount_out, result.fee) == (GOLDEN_OUT, GOLDEN_FEE)


def test_exact_out_round_trips_the_golden_vector_to_one_billion_in() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    result = pool.swap_exact_out(GOLDEN_OUT)

    assert (result.amount_in, result.amount_out, result.fee) == (GOLDEN_IN, GOLDEN_OUT, GOLDEN_FEE)


def test_exact_out_for_the_docs_misprinted_output_needs_more_than_one_billion() -> None:
    # docs/venues.md: Raydium's docs' "1 995 015 009 out" would need 1 001 006 036 in.
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    assert pool.swap_exact_out(1_995_015_009).amount_in == 1_001_006_036


def test_reverse_direction_swaps_the_roles_of_the_reserves() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_Y, GOLDEN_X)

    result = pool.swap_exact_in(GOLDEN_IN, swap_for_y=False)

    assert result.amount_out == GOLDEN_OUT
    assert (result.pool.reserve_x, result.pool.reserve_y) == (
        GOLDEN_Y - GOLDEN_OUT,
        GOLDEN_X + GOLDEN_IN,
    )


def test_price_impact_of_golden_trade_is_net_over_reserve_plus_net_within_one_atom() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)
    net_in = GOLDEN_IN - GOLDEN_FEE

    impact = pool.swap_exact_in(GOLDEN_IN).price_impact_bps

    # Exact CP impact is net / (x + net); flooring the output adds at most one atom's worth.
    ideal = Fraction(net_in, GOLDEN_X + net_in) * 10_000
    one_atom_bps = Fraction(10_000, GOLDEN_OUT)
    assert isinstance(impact, Fraction)
    assert ideal <= impact <= ideal + one_atom_bps
    assert Fraction(996, 100) < impact < Fraction(997, 100)


@pytest.mark.parametrize(
    ("trade_fee_rate", "expected_fee"),
    [(100, 100_000), (2_500, 2_500_000), (10_000, 10_000_000)],
)
def test_cpmm_fee_tiers_charge_their_rate_of_the_input(
    trade_fee_rate: int, expected_fee: int
) -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y, trade_fee_rate)

    assert pool.swap_exact_in(GOLDEN_IN).fee == expected_fee


def test_fee_rounds_up_so_one_atom_pays_one_atom_of_fee() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    assert pool.trade_fee(1) == 1
    assert pool.trade_fee(400) == 1
    assert pool.trade_fee(401) == 2


def test_protocol_and_fund_shares_leave_the_curve() -> None:
    pool = ConstantProductPool.raydium_cpmm(
        GOLDEN_X, GOLDEN_Y, protocol_fee_rate=120_000, fund_fee_rate=40_000
    )

    result = pool.swap_exact_in(GOLDEN_IN)

    # 12 % + 4 % of the 2.5 M fee; 84 % stays in the pool for LPs.
    assert result.protocol_fee == 300_000 + 100_000
    assert result.amount_out == GOLDEN_OUT
    assert result.pool.reserve_x == GOLDEN_X + GOLDEN_IN - 400_000


# --- errors and immutability ---------------------------------------------------------------------


def test_input_too_small_to_buy_an_atom_raises_amount_too_small() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    with pytest.raises(ZeroTradingTokens) as raised:
        pool.swap_exact_in(1)  # the 1-atom fee eats the whole input

    assert raised.value.code == "AMOUNT_TOO_SMALL"


def test_exact_out_of_the_whole_reserve_raises_no_liquidity() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    with pytest.raises(InsufficientLiquidity) as raised:
        pool.swap_exact_out(GOLDEN_Y)

    assert raised.value.code == "NO_LIQUIDITY"


def test_empty_pool_raises_no_liquidity() -> None:
    pool = ConstantProductPool.raydium_cpmm(0, GOLDEN_Y)

    with pytest.raises(InsufficientLiquidity):
        pool.swap_exact_in(GOLDEN_IN)


@pytest.mark.parametrize("bad_amount", [0, -5, True, 1.5, Fraction(3, 2)])
def test_non_positive_or_non_integer_amounts_are_refused(bad_amount: object) -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    with pytest.raises(InvalidAmount) as raised:
        pool.swap_exact_in(bad_amount)  # type: ignore[arg-type]

    assert raised.value.code == "INVALID_AMOUNT"


def test_swap_returns_a_new_pool_and_leaves_the_original_untouched() -> None:
    pool = ConstantProductPool.raydium_cpmm(GOLDEN_X, GOLDEN_Y)

    pool.swap_exact_in(GOLDEN_IN)

    assert (pool.reserve_x, pool.reserve_y) == (GOLDEN_X, GOLDEN_Y)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.reserve_x = 1  # type: ignore[misc]


def test_fee_of_one_hundred_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="fee"):
        ConstantProductPool(GOLDEN_X, GOLDEN_Y, fee_numerator=10, fee_denominator=10)


# --- properties ----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(pool=pools(), amount_in=amounts, swap_for_y=directions)
def test_k_never_decreases_on_exact_in(
    pool: ConstantProductPool, amount_in: int, swap_for_y: bool
) -> None:
    try:
        result = pool.swap_exact_in(amount_in, swap_for_y)
    except ZeroTradingTokens:
        return
    assert result.pool.invariant >= pool.invariant
    assert 0 <= result.price_impact_bps < 10_000


@PROPERTY_SETTINGS
@given(pool=pools(), amount_out=amounts, swap_for_y=directions)
def test_k_never_decreases_on_exact_out(
    pool: ConstantProductPool, amount_out: int, swap_for_y: bool
) -> None:
    try:
        result = pool.swap_exact_out(amount_out, swap_for_y)
    except InsufficientLiquidity:
        return
    assert result.pool.invariant >= pool.invariant
    assert result.amount_out == amount_out


@PROPERTY_SETTINGS
@given(pool=pools(), smaller=amounts, extra=amounts, swap_for_y=directions)
def test_output_is_monotone_non_decreasing_in_input(
    pool: ConstantProductPool, smaller: int, extra: int, swap_for_y: bool
) -> None:
    larger = smaller + extra

    assert output_or_zero(pool, smaller, swap_for_y) <= output_or_zero(pool, larger, swap_for_y)


@PROPERTY_SETTINGS
@given(pool=pools(), amount_out=amounts, swap_for_y=directions)
def test_exact_out_then_exact_in_never_yields_less_than_asked(
    pool: ConstantProductPool, amount_out: int, swap_for_y: bool
) -> None:
    try:
        quoted = pool.swap_exact_out(amount_out, swap_for_y)
    except InsufficientLiquidity:
        return

    received = pool.swap_exact_in(quoted.amount_in, swap_for_y)

    assert received.amount_out >= amount_out


@PROPERTY_SETTINGS
@given(pool=pools(), amount_in=amounts, swap_for_y=directions)
def test_exact_in_then_exact_out_never_costs_more_than_was_paid(
    pool: ConstantProductPool, amount_in: int, swap_for_y: bool
) -> None:
    try:
        received = pool.swap_exact_in(amount_in, swap_for_y)
    except ZeroTradingTokens:
        return

    assert pool.swap_exact_out(received.amount_out, swap_for_y).amount_in <= amount_in
