"""Meteora DLMM bin prices: Q64.64 fixed-point integers computed by the program's own algorithm
(square and multiply, flooring every product, inverting through `u128::MAX // x`), so a bin
price here is meant to be bit-identical to the on-chain `get_price_from_id`. A price is in atoms
of Y per atom of X; `exact_price_from_id` gives the exact `Fraction` for reports and tests.

Source: MeteoraAg/dlmm-sdk, commons/src/math/price_math.rs and commons/src/math/u64x64_math.rs
(`get_price_from_id`, `pow`); docs/venues.md has the formulas.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

BASIS_POINT_MAX = 10_000
MIN_BIN_ID = -443_636
MAX_BIN_ID = 443_636
MAX_BIN_STEP = 400

SCALE_OFFSET = 64
ONE_Q64 = 1 << SCALE_OFFSET
U128_MAX = (1 << 128) - 1
# 19 exponent bits cover every bin id; the program refuses larger exponents.
_MAX_EXPONENT = 0x80000


@lru_cache(maxsize=8192)  # pure and called for every bin of every quote
def price_q64_from_id(bin_id: int, bin_step: int) -> int:
    """Q64.64 price of bin `bin_id`: `(1 + bin_step / 10_000) ** bin_id` as the program computes it.

    Checked against the program's own unit tests (MeteoraAg/dlmm-sdk:
    programs/lb_clmm/src/math/price_math.rs, ids 5555 and -5555 at bin_step 10).
    Raises `ValueError` for an id outside [MIN_BIN_ID, MAX_BIN_ID] or a price that rounds to 0.
    """
    if not MIN_BIN_ID <= bin_id <= MAX_BIN_ID:
        raise ValueError(f"bin id {bin_id} is outside [{MIN_BIN_ID}, {MAX_BIN_ID}]")
    # The step itself is floored to Q64.64 before exponentiation, as in price_math.rs.
    base = ONE_Q64 + (bin_step << SCALE_OFFSET) // BASIS_POINT_MAX
    return _pow_q64(base, bin_id)


def _pow_q64(base: int, exponent: int) -> int:
    """`base ** exponent` in Q64.64, following u64x64_math.rs::pow step for step.

    A base above one is replaced by its reciprocal (`u128::MAX // base`) so every intermediate
    product stays below 2**128 in the program; the result is inverted back at the end. Each
    product is floored (`>> 64`), which is why the result can differ from the exact power in the
    last bits.
    """
    if exponent == 0:
        return ONE_Q64
    invert = exponent < 0
    power = abs(exponent)
    if power >= _MAX_EXPONENT:
        raise ValueError(f"exponent {exponent} overflows a Q64.64 price")
    squared = base
    if squared >= ONE_Q64:
        squared = U128_MAX // squared
        invert = not invert
    result = ONE_Q64
    bit = 1
    while bit <= power:
        if power & bit:
            result = (result * squared) >> SCALE_OFFSET
        bit <<= 1
        squared = (squared * squared) >> SCALE_OFFSET
    if result == 0:
        raise ValueError(f"price for exponent {exponent} underflows Q64.64")
    if invert:
        result = U128_MAX // result
    return result


def exact_price_from_id(bin_id: int, bin_step: int) -> Fraction:
    """The mathematically exact bin price `(1 + bin_step / 10_000) ** bin_id` (Y atoms per X)."""
    return Fraction(BASIS_POINT_MAX + bin_step, BASIS_POINT_MAX) ** bin_id


def q64_to_fraction(value_q64: int) -> Fraction:
    """Read a Q64.64 integer as an exact `Fraction`."""
    return Fraction(value_q64, ONE_Q64)


def bin_id_at_or_below_price(price: Fraction, bin_step: int) -> int:
    """The highest bin id whose Q64.64 price is <= `price` (Y atoms per X atom).

    Found by bisection on the integer prices, so no logarithm (and no float) is involved. Use it
    to seed a pool around a reference price, e.g. 150 USDC/SOL is 0.15 atoms -> id -1899 at
    bin_step 10 (the bin just below; -1898 is the nearest).
    """
    if price <= 0:
        raise ValueError("price must be positive")
    target = price * ONE_Q64
    low, high = MIN_BIN_ID, MAX_BIN_ID
    if _price_or_zero(low, bin_step) > target:
        raise ValueError("price is below the lowest bin")
    # Invariant: price(low) <= target; bins above `high` are above target.
    while low < high:
        middle = (low + high + 1) // 2
        if _price_or_zero(middle, bin_step) <= target:
            low = middle
        else:
            high = middle - 1
    return low


def _price_or_zero(bin_id: int, bin_step: int) -> int:
    try:
        return price_q64_from_id(bin_id, bin_step)
    except ValueError:
        # Only the far ends fail: underflow below, overflow above.
        return 0 if bin_id < 0 else U128_MAX + 1
