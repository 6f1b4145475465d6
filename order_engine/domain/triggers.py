"""The arithmetic of the orders that protect a position: stops, OCO brackets, trailing stops.
Pure functions on exact numbers (docs/design.md, "The trigger engine"; docs/api.md).

- A **stop** sells when the engine's net quote for its whole amount pays at most `triggerPrice`
  tokenOut per tokenIn: `quote ≤ floor(amount × triggerPrice)` in atoms of tokenOut.
- An **OCO bracket** has a take-profit leg (a limit: `quote ≥ ceil(amount × limitPrice)`,
  `amounts.required_out_atoms`) and a stop-loss leg (a stop); one quote decides, and when both
  are met the stop wins.
- A **trailing stop** follows the quote of its *size class*: the best venue's net quote for its
  amount rounded down to a power of two of atoms (between half its amount and all of it), per
  tokenIn. Orders of one pair and class share that quote, so its peak can be kept once for all
  of them. It fires when that quote is at most `peak × (10,000 − trailBps) / 10,000`.

Prices are kept as numeric(38, 18): a peak is stored rounded down (never above a quote seen),
and a trigger level's index key rounded up (the index then finds a superset of the orders that
can fire; the exact comparison is made here).
"""

from __future__ import annotations

import enum
from decimal import Context, Decimal
from fractions import Fraction

BPS = 10_000
PRICE_DECIMALS = 18
PRICE_QUANTUM = Decimal("1e-18")
_SCALE = 10**PRICE_DECIMALS
# Wide enough for any numeric(38, 18) and more: no operation on a price here rounds.
EXACT = Context(prec=80)
TRAIL_BPS_MIN, TRAIL_BPS_MAX = 1, 5_000


class BracketLeg(enum.StrEnum):
    """The leg of an OCO bracket that met the market (its events' `leg`)."""

    TAKE_PROFIT = "takeProfit"
    STOP_LOSS = "stopLoss"


def size_class(amount_atoms: int) -> int:
    """The order's size class: the k with 2^k ≤ amount < 2^(k+1) (atoms of tokenIn)."""
    if amount_atoms < 1:
        raise ValueError("an amount of at least one atom has a size class")
    return amount_atoms.bit_length() - 1


def class_amount(k: int) -> int:
    """The amount whose quote a size class follows: 2^k atoms, its smallest member."""
    return 1 << k


def unit_price(out_atoms: int, in_atoms: int, one_in: int, one_out: int) -> Fraction:
    """A quote as tokenOut per one tokenIn, exact."""
    return Fraction(out_atoms * one_in, in_atoms * one_out)


def quantized_down(price: Fraction | Decimal) -> Decimal:
    """A price rounded down to the stored precision (a peak never above what was seen)."""
    value = Fraction(price) * _SCALE
    return Decimal(value.numerator // value.denominator).scaleb(-PRICE_DECIMALS, EXACT)


def quantized_up(price: Fraction | Decimal) -> Decimal:
    """A price rounded up to the stored precision (an index key that misses no order)."""
    value = Fraction(price) * _SCALE
    return Decimal(-(-value.numerator // value.denominator)).scaleb(-PRICE_DECIMALS, EXACT)


def plain(value: Decimal | Fraction) -> str:
    """A price as its events and answers show it: plain digits, no exponent, no trailing 0s."""
    decimal = value if isinstance(value, Decimal) else quantized_down(value)
    return format(decimal.normalize(EXACT), "f")


# -- stops and the stop-loss leg --------------------------------------------------------------


def stop_ceiling_atoms(amount_in: Decimal, trigger_price: Decimal, decimals_out: int) -> int:
    """The most a quote may pay, in atoms of tokenOut, for a stop at `trigger_price` to fire:
    floor(amount × triggerPrice), so that a quote of exactly that price fires it."""
    exact = Fraction(amount_in) * Fraction(trigger_price) * 10**decimals_out
    return exact.numerator // exact.denominator


def stop_met(quoted_out: int, ceiling: int) -> bool:
    """A stop fires when the engine's quote for its whole amount falls to its price or below."""
    return quoted_out <= ceiling


def oco_leg(quoted_out: int, take_profit_floor: int, stop_ceiling: int) -> BracketLeg | None:
    """Which leg of a bracket one quote meets: the stop when both are (its promise is to get
    out), the take-profit when only it is, else None (the bracket keeps waiting)."""
    if stop_met(quoted_out, stop_ceiling):
        return BracketLeg.STOP_LOSS
    if quoted_out >= take_profit_floor:
        return BracketLeg.TAKE_PROFIT
    return None


# -- trailing stops ----------------------------------------------------------------------------


def trigger_level(peak: Decimal, trail_bps: int) -> Fraction:
    """peak × (10,000 − trailBps) / 10,000, exact."""
    return Fraction(peak) * (BPS - trail_bps) / BPS


def level_key(peak: Decimal, trail_bps: int) -> Decimal:
    """The trigger level as the stop index stores it: rounded up (a superset of what fires)."""
    return quantized_up(trigger_level(peak, trail_bps))


def trailing_met(class_price: Fraction, peak: Decimal, trail_bps: int) -> bool:
    """A trailing stop fires when its class's quote falls to its trigger level or below."""
    return class_price <= trigger_level(peak, trail_bps)


def widest_trail_met(class_price: Fraction, peak: Decimal) -> int:
    """The largest trailBps that a quote of `class_price` fires under `peak` (0: none): the
    orders that followed that peak with this trail or a narrower one are the candidates."""
    if peak <= 0 or class_price >= Fraction(peak):
        return 0
    drop = (Fraction(peak) - class_price) / Fraction(peak) * BPS
    return min(drop.numerator // drop.denominator, TRAIL_BPS_MAX)


def activation_met(class_price: Fraction, activation_price: Decimal) -> bool:
    """A trailing stop with an activation price starts trailing once its quote reaches it."""
    return class_price >= Fraction(activation_price)


def shown_level(peak: Decimal, trail_bps: int) -> Decimal:
    """The trigger level as answers show it: rounded down to the stored precision, so that a
    quote at or under the level shown is one that fires."""
    return quantized_down(trigger_level(peak, trail_bps))
