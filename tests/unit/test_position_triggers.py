"""The arithmetic of stops, OCO brackets and trailing stops, at their boundaries: a quote equal
to the trigger, one atom either side; a bracket both of whose legs are met; a trailing stop's
peak, level, drop and activation."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from order_engine.domain.amounts import price_floor, required_out_atoms
from order_engine.domain.tokens import resolve
from order_engine.domain.triggers import (
    BracketLeg,
    activation_met,
    class_amount,
    level_key,
    oco_leg,
    quantized_down,
    quantized_up,
    shown_level,
    size_class,
    stop_ceiling_atoms,
    stop_met,
    trailing_met,
    trigger_level,
    unit_price,
    widest_trail_met,
)
from order_engine.models import Order

SOL, USDC = resolve("SOL"), resolve("USDC")
prices = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6, allow_nan=False
)
amounts = st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal("1000"), places=9)


def test_a_size_class_holds_the_amounts_from_its_power_of_two_to_the_next():
    assert [size_class(n) for n in (1, 2, 3, 4, 7, 8)] == [0, 1, 1, 2, 2, 3]
    assert size_class(2**63 + 5) == 63
    assert class_amount(size_class(1_500_000_000)) == 2**30  # 1.5 SOL -> 1.073741824 SOL
    with pytest.raises(ValueError, match="at least one atom"):
        size_class(0)


def test_a_stop_fires_at_its_price_and_below_never_one_atom_above():
    # 2 SOL stopped at 120 USDC: the quote may pay at most 240 USDC.
    ceiling = stop_ceiling_atoms(Decimal("2"), Decimal("120"), USDC.decimals)
    assert ceiling == 240_000_000
    assert stop_met(240_000_000, ceiling)
    assert stop_met(239_999_999, ceiling)
    assert not stop_met(240_000_001, ceiling)
    # amount × price between two atoms: the atom under it is the last that fires.
    ceiling = stop_ceiling_atoms(Decimal("0.333333333"), Decimal("120.5"), USDC.decimals)
    assert ceiling == 40_166_666  # 40.1666666265 USDC
    assert stop_met(40_166_666, ceiling)
    assert not stop_met(40_166_667, ceiling)


@settings(max_examples=300, deadline=None)
@given(amount=amounts, trigger=prices, quote=st.integers(0, 10**14))
def test_a_stop_fires_exactly_when_its_quote_pays_its_price_or_less(amount, trigger, quote):
    ceiling = stop_ceiling_atoms(amount, trigger, USDC.decimals)
    exact = Fraction(amount) * Fraction(trigger) * USDC.one
    assert stop_met(quote, ceiling) == (quote <= exact)


def test_a_bracket_takes_the_leg_the_quote_meets_and_the_stop_when_both_are():
    amount = Decimal("2")
    take = required_out_atoms(amount, Decimal("260"), None, USDC.decimals)  # 520 USDC
    stop = stop_ceiling_atoms(amount, Decimal("120"), USDC.decimals)  # 240 USDC
    assert oco_leg(520_000_000, take, stop) is BracketLeg.TAKE_PROFIT
    assert oco_leg(519_999_999, take, stop) is None
    assert oco_leg(240_000_001, take, stop) is None
    assert oco_leg(240_000_000, take, stop) is BracketLeg.STOP_LOSS
    # Both conditions met by one quote (a floor under the ceiling): the stop wins.
    assert oco_leg(300, 200, 400) is BracketLeg.STOP_LOSS
    assert oco_leg(300, 300, 300) is BracketLeg.STOP_LOSS


def bracket(leg: str | None) -> Order:
    return Order(
        type="oco",
        amount_in=Decimal("2"),
        slippage_bps=300,
        limit_price=Decimal("260"),
        max_price=None,
        stop_price=Decimal("120"),
        trigger_leg=leg,
    )


def test_a_bracket_executes_its_take_profit_as_a_limit_and_its_stop_loss_as_a_stop():
    assert price_floor(bracket("takeProfit"), USDC) == 520_000_000  # never below 2 × 260
    assert price_floor(bracket("stopLoss"), USDC) == 0  # its promise is to get out
    # Waiting (no leg yet), a bracket's floor is its take-profit's, as a limit's.
    assert price_floor(bracket(None), USDC) == 520_000_000


def class_quote(out_atoms: int, k: int = 30) -> Fraction:
    """The quote of SOL/USDC class k (2^k lamports) that pays `out_atoms` of USDC."""
    return unit_price(out_atoms, class_amount(k), SOL.one, USDC.one)


def test_a_trailing_stop_fires_at_its_level_and_below_never_one_atom_above():
    peak, trail = Decimal("150"), 500  # level 142.5 USDC per SOL
    assert trigger_level(peak, trail) == Fraction(285, 2)
    # 2^30 lamports at 142.5 pay 153.00820992 USDC: 153008209 atoms is under the level.
    at_level = 153_008_209
    assert trailing_met(class_quote(at_level), peak, trail)
    assert trailing_met(class_quote(at_level - 1), peak, trail)
    assert not trailing_met(class_quote(at_level + 1), peak, trail)
    # A quote exactly on the level fires.
    assert trailing_met(Fraction(285, 2), peak, trail)


@settings(max_examples=300, deadline=None)
@given(peak=prices, drop=st.integers(0, 6_000), jitter=st.integers(-3, 3))
def test_the_widest_trail_a_drop_fires_is_exactly_the_last_that_fires(peak, drop, jitter):
    price = Fraction(peak) * (10_000 - drop) / 10_000 + Fraction(jitter, 10**9)
    widest = widest_trail_met(price, peak)
    assert 0 <= widest <= 5_000
    if widest:
        assert trailing_met(price, peak, widest)
    if widest < 5_000:
        assert not trailing_met(price, peak, widest + 1)


def test_a_rise_or_no_drop_fires_no_trail():
    assert widest_trail_met(Fraction(150), Decimal("150")) == 0
    assert widest_trail_met(Fraction(151), Decimal("150")) == 0
    assert widest_trail_met(Fraction(1485, 10), Decimal("150")) == 100  # -1 %


def test_a_trailing_stop_activates_when_its_quote_reaches_the_price():
    assert activation_met(Fraction(200), Decimal("200"))
    assert not activation_met(Fraction(199_999_999_999, 10**9), Decimal("200"))
    assert activation_met(class_quote(214_748_365), Decimal("200"))  # 200.0000004 per SOL
    assert not activation_met(class_quote(214_748_364), Decimal("200"))


@settings(max_examples=300, deadline=None)
@given(out=st.integers(1, 10**15), k=st.integers(0, 50), trail=st.integers(1, 5_000), peak=prices)
def test_stored_prices_round_so_the_index_misses_nothing(out, k, trail, peak):
    price = class_quote(out, k)
    assert Fraction(quantized_down(price)) <= price <= Fraction(quantized_up(price))
    # The index key is at or above the exact level (a superset), the level shown at or under
    # it (a quote at or under what is shown fires).
    assert Fraction(level_key(peak, trail)) >= trigger_level(peak, trail)
    assert Fraction(shown_level(peak, trail)) <= trigger_level(peak, trail)
    assert trailing_met(Fraction(shown_level(peak, trail)), peak, trail)


def test_a_peak_is_stored_rounded_down_never_above_a_quote_seen():
    third = Fraction(1, 3)
    assert quantized_down(third) == Decimal("0.333333333333333333")
    assert quantized_up(third) == Decimal("0.333333333333333334")
    assert quantized_up(Fraction(1, 4)) == Decimal("0.25")
