"""Meteora DLMM: a ladder of constant-sum price bins with a volatility-driven fee.

Prices are Q64.64 fixed-point integers computed by the program's own algorithm (square and
multiply, flooring every product, inverting through `u128::MAX // x`), so a bin price here is
meant to be bit-identical to the on-chain `get_price_from_id`. A price is in atoms of Y per atom
of X. `exact_price_from_id` gives the mathematically exact `Fraction` for reports and tests.

Inside a bin the swap is constant-sum (no price impact); when a bin's output reserve is used up
the walk moves to the next bin (down for X -> Y, up for Y -> X). The fee rate, at 1e9 precision,
is `base + variable` capped at 10 %, where the variable part grows with the volatility
accumulator `v_a`: 10_000 for every bin the price has moved away from the reference bin.

Sources (MeteoraAg/dlmm-sdk):
* commons/src/math/price_math.rs, commons/src/math/u64x64_math.rs -- `get_price_from_id`, `pow`
* commons/src/extensions/bin.rs -- per-bin swap, `get_amount_in` / `get_amount_out` rounding
* commons/src/extensions/lb_pair.rs -- fee rates, `update_references`,
  `update_volatility_accumulator`
* commons/src/quote.rs -- the bin walk for ExactIn and ExactOut quotes
and https://docs.meteora.ag/overview/products/dlmm/dlmm-formulas (collected in dex.md §2.5).

Deliberate differences from the program, all in the simulator's favour of simplicity:
* bins live in one mapping, not in 70-bin arrays, so there is no 3-array quote limit;
* Token-2022 transfer fees and limit orders are not modelled;
* an ExactIn swap that would return zero atoms raises `ZeroTradingTokens` (the program would take
  the dust and return nothing, which no router wants);
* `update_references` decays with `v_a * reduction_factor / 10_000`, the canonical form; one SDK
  revision has `checked_sub` there, which dex.md §2.5 treats as a typo.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType

from order_engine.venues.math import (
    InsufficientLiquidity,
    ZeroTradingTokens,
    ceil_div,
    require_positive_atoms,
)

BASIS_POINT_MAX = 10_000
FEE_PRECISION = 1_000_000_000
MAX_FEE_RATE = 100_000_000  # 10 %
# (v_a * bin_step)^2 * variable_fee_control is scaled down by 1e11 to reach 1e9 precision.
VARIABLE_FEE_SCALE = 100_000_000_000
MIN_BIN_ID = -443_636
MAX_BIN_ID = 443_636
MAX_BIN_STEP = 400

SCALE_OFFSET = 64
ONE_Q64 = 1 << SCALE_OFFSET
U128_MAX = (1 << 128) - 1
# 19 exponent bits cover every bin id; the program refuses larger exponents.
_MAX_EXPONENT = 0x80000


# --- prices ------------------------------------------------------------------------------------


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


# --- fees --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DlmmParameters:
    """A pair's static parameters (the program's `StaticParameters` plus its bin step).

    Fee rates are at 1e9 precision (`FEE_PRECISION`). `filter_period` and `decay_period` are in
    seconds, `reduction_factor` and `protocol_share` in basis points.
    """

    bin_step: int
    base_factor: int
    variable_fee_control: int = 0
    filter_period: int = 30
    decay_period: int = 600
    reduction_factor: int = 5_000
    max_volatility_accumulator: int = 350_000
    protocol_share: int = 0
    base_fee_power_factor: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.bin_step <= MAX_BIN_STEP:
            raise ValueError(f"bin_step must be in [1, {MAX_BIN_STEP}]")
        if self.filter_period > self.decay_period:
            raise ValueError("filter_period must not exceed decay_period")
        if not 0 <= self.reduction_factor <= BASIS_POINT_MAX:
            raise ValueError("reduction_factor is in basis points")
        if not 0 <= self.protocol_share <= BASIS_POINT_MAX:
            raise ValueError("protocol_share is in basis points")

    def base_fee_rate(self) -> int:
        """`base_factor * bin_step * 10 * 10**power` (lb_pair.rs `get_base_fee`)."""
        return self.base_factor * self.bin_step * 10 * 10**self.base_fee_power_factor

    def variable_fee_rate(self, volatility_accumulator: int) -> int:
        """`ceil((v_a * bin_step)**2 * variable_fee_control / 1e11)`, zero when the control is 0."""
        if self.variable_fee_control == 0:
            return 0
        squared = (volatility_accumulator * self.bin_step) ** 2
        return ceil_div(squared * self.variable_fee_control, VARIABLE_FEE_SCALE)

    def total_fee_rate(self, volatility_accumulator: int) -> int:
        """Base plus variable fee, capped at `MAX_FEE_RATE` (10 %)."""
        base = self.base_fee_rate()
        return min(base + self.variable_fee_rate(volatility_accumulator), MAX_FEE_RATE)

    def protocol_fee(self, fee: int) -> int:
        """The protocol's floored share of a fee; the rest goes to the bin's LPs."""
        return fee * self.protocol_share // BASIS_POINT_MAX


def fee_on_net_amount(amount: int, fee_rate: int) -> int:
    """Fee to add on top of a net amount: `ceil(amount * r / (1e9 - r))` (`compute_fee`)."""
    return ceil_div(amount * fee_rate, FEE_PRECISION - fee_rate)


def fee_on_gross_amount(amount: int, fee_rate: int) -> int:
    """Fee included in a gross amount: `ceil(amount * r / 1e9)` (`compute_fee_from_amount`)."""
    return ceil_div(amount * fee_rate, FEE_PRECISION)


@dataclass(frozen=True)
class VolatilityState:
    """The program's `VariableParameters`: the state behind the variable fee."""

    volatility_accumulator: int = 0
    volatility_reference: int = 0
    index_reference: int = 0
    last_update_timestamp: int = 0

    def with_references_updated(
        self, params: DlmmParameters, active_id: int, now: int
    ) -> VolatilityState:
        """Once per swap, before the bin walk (lb_pair.rs `update_references`).

        Within `filter_period` of the last swap nothing changes, so a burst of trades keeps
        adding up. After it, the reference moves to the current bin and the accumulator decays
        by `reduction_factor`; after `decay_period` it resets to zero.
        """
        elapsed = now - self.last_update_timestamp
        if elapsed < params.filter_period:
            return self
        if elapsed < params.decay_period:
            reference = self.volatility_accumulator * params.reduction_factor // BASIS_POINT_MAX
        else:
            reference = 0
        return replace(self, index_reference=active_id, volatility_reference=reference)

    def at_bin(self, params: DlmmParameters, active_id: int) -> VolatilityState:
        """For every bin the walk visits (lb_pair.rs `update_volatility_accumulator`)."""
        moved = abs(self.index_reference - active_id)
        accumulator = min(
            self.volatility_reference + moved * BASIS_POINT_MAX, params.max_volatility_accumulator
        )
        return replace(self, volatility_accumulator=accumulator)


# --- bins and pool -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    """Reserves of one bin in atoms. Accrued LP fees are held outside, as in the program."""

    amount_x: int
    amount_y: int

    def __post_init__(self) -> None:
        for amount in (self.amount_x, self.amount_y):
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise ValueError(f"bin amounts must be non-negative ints, got {amount!r}")

    def reserve_out(self, swap_for_y: bool) -> int:
        """Reserve of the token this bin pays out in a swap direction."""
        return self.amount_y if swap_for_y else self.amount_x

    def after_fill(self, net_in: int, amount_out: int, swap_for_y: bool) -> Bin:
        """The bin after taking `net_in` (fee excluded) and paying `amount_out`."""
        if swap_for_y:
            return Bin(self.amount_x + net_in, self.amount_y - amount_out)
        return Bin(self.amount_x - amount_out, self.amount_y + net_in)


@dataclass(frozen=True)
class _BinFill:
    """What one bin contributes to a swap: gross input (fee included), output and fee."""

    amount_in: int
    amount_out: int
    fee: int

    @property
    def net_in(self) -> int:
        """The input that lands in the bin's reserves (the fee is accounted outside)."""
        return self.amount_in - self.fee


def _amount_out(net_in: int, price_q64: int, swap_for_y: bool) -> int:
    """Output for a net input at a bin price, floored (bin.rs `get_amount_out`, Rounding::Down)."""
    if swap_for_y:
        return (net_in * price_q64) >> SCALE_OFFSET
    return (net_in << SCALE_OFFSET) // price_q64


def _amount_in(amount_out: int, price_q64: int, swap_for_y: bool) -> int:
    """Net input buying `amount_out` at a bin price, rounded up (bin.rs `get_amount_in`)."""
    if swap_for_y:
        return ceil_div(amount_out << SCALE_OFFSET, price_q64)
    return ceil_div(amount_out * price_q64, ONE_Q64)


def _fill_exact_in(
    current: Bin, price_q64: int, amount_left: int, fee_rate: int, swap_for_y: bool
) -> _BinFill:
    """Spend up to `amount_left` in one bin (bin.rs `Bin::swap`)."""
    reserve_out = current.reserve_out(swap_for_y)
    max_net_in = _amount_in(reserve_out, price_q64, swap_for_y)
    max_fee = fee_on_net_amount(max_net_in, fee_rate)
    if amount_left > max_net_in + max_fee:
        return _BinFill(max_net_in + max_fee, reserve_out, max_fee)
    fee = fee_on_gross_amount(amount_left, fee_rate)
    amount_out = _amount_out(amount_left - fee, price_q64, swap_for_y)
    return _BinFill(amount_left, min(amount_out, reserve_out), fee)


def _fill_exact_out(
    current: Bin, price_q64: int, amount_wanted: int, fee_rate: int, swap_for_y: bool
) -> _BinFill:
    """Buy up to `amount_wanted` from one bin (quote.rs `quote_exact_out`, fee grossed up)."""
    amount_out = min(amount_wanted, current.reserve_out(swap_for_y))
    net_in = _amount_in(amount_out, price_q64, swap_for_y)
    fee = fee_on_net_amount(net_in, fee_rate)
    return _BinFill(net_in + fee, amount_out, fee)


@dataclass(frozen=True)
class DlmmPool:
    """Immutable state of one DLMM pair: parameters, active bin, bins and volatility state.

    `bins` maps bin id to `Bin`; ids not present are empty. Swaps return a new `DlmmPool` in
    their result and leave this one untouched. `now` arguments are unix seconds from the
    simulator's clock and must not go backwards.
    """

    params: DlmmParameters
    active_id: int
    bins: Mapping[int, Bin]
    volatility: VolatilityState = field(default_factory=VolatilityState)
    _sorted_ids: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        frozen_bins = MappingProxyType(dict(self.bins))
        for bin_id, current in frozen_bins.items():
            if not MIN_BIN_ID <= bin_id <= MAX_BIN_ID:
                raise ValueError(f"bin id {bin_id} is outside the program's range")
            if not isinstance(current, Bin):
                raise TypeError(f"bin {bin_id} must be a Bin, got {type(current).__name__}")
        # Frozen dataclass: the normalised fields are set once, here.
        object.__setattr__(self, "bins", frozen_bins)
        object.__setattr__(self, "_sorted_ids", tuple(sorted(frozen_bins)))
        # Prices are monotone in the id, so if the outermost bins and the active bin have a
        # Q64.64 price, every bin a swap can reach has one (raises ValueError otherwise).
        for bin_id in {self.active_id, *self._sorted_ids[:1], *self._sorted_ids[-1:]}:
            self.price_q64(bin_id)

    def price_q64(self, bin_id: int | None = None) -> int:
        """Q64.64 price of a bin (the active bin by default)."""
        return price_q64_from_id(self.active_id if bin_id is None else bin_id, self.params.bin_step)

    def spot_price(self) -> Fraction:
        """Price of the active bin in Y atoms per X atom, as an exact `Fraction` of its Q64.64."""
        return q64_to_fraction(self.price_q64())

    def fee_rate_at(self, now: int) -> int:
        """Fee rate (1e9 precision) the next swap at `now` pays in the active bin."""
        volatility = self.volatility.with_references_updated(self.params, self.active_id, now)
        volatility = volatility.at_bin(self.params, self.active_id)
        return self.params.total_fee_rate(volatility.volatility_accumulator)

    def total_reserve_out(self, swap_for_y: bool) -> int:
        """All output-token atoms reachable by walking from the active bin in one direction."""
        if swap_for_y:
            reachable = (i for i in self._sorted_ids if i <= self.active_id)
        else:
            reachable = (i for i in self._sorted_ids if i >= self.active_id)
        return sum(self.bins[i].reserve_out(swap_for_y) for i in reachable)

    def swap_exact_in(self, amount_in: int, swap_for_y: bool, now: int) -> DlmmSwapResult:
        """Sell exactly `amount_in` atoms (X if `swap_for_y`, else Y), walking bins as needed.

        Raises `InsufficientLiquidity` (code NO_LIQUIDITY) when the bins run out before the input
        is spent, and `ZeroTradingTokens` when the output rounds to zero.
        """
        require_positive_atoms(amount_in, "amount_in")
        result = self._walk(amount_in, swap_for_y, now, exact_in=True)
        if result.amount_out == 0:
            raise ZeroTradingTokens(f"{amount_in} atoms in buys nothing from this pool")
        return result

    def swap_exact_out(self, amount_out: int, swap_for_y: bool, now: int) -> DlmmSwapResult:
        """Buy exactly `amount_out` atoms (Y if `swap_for_y`, else X); input rounds up.

        Raises `InsufficientLiquidity` when the bins hold less than `amount_out`.
        """
        require_positive_atoms(amount_out, "amount_out")
        return self._walk(amount_out, swap_for_y, now, exact_in=False)

    def amount_out_exact_in(self, amount_in: int, swap_for_y: bool, now: int) -> int:
        """`swap_exact_in(...).amount_out` without building the pool after the swap.

        The router's split search asks for hundreds of outputs per large order; this is the same
        walk with the same rounding (a property test holds the two equal), minus the copy of
        every bin and the new pool's validation.
        """
        require_positive_atoms(amount_in, "amount_in")
        if now < self.volatility.last_update_timestamp:
            raise ValueError("the clock went backwards: now is before the last swap")
        params = self.params
        reference = self.volatility.with_references_updated(params, self.active_id, now)
        active_id = self.active_id
        remaining, total_out = amount_in, 0
        while True:
            # `VolatilityState.at_bin`, inline: the accumulator grows with the distance walked.
            moved = abs(reference.index_reference - active_id)
            accumulator = min(
                reference.volatility_reference + moved * BASIS_POINT_MAX,
                params.max_volatility_accumulator,
            )
            current = self.bins.get(active_id)
            if current is not None and current.reserve_out(swap_for_y) > 0:
                fill = _fill_exact_in(
                    current,
                    self.price_q64(active_id),
                    remaining,
                    params.total_fee_rate(accumulator),
                    swap_for_y,
                )
                total_out += fill.amount_out
                remaining -= fill.amount_in
            if remaining == 0:
                break
            active_id = self._next_bin_with_output(active_id, swap_for_y)
        if total_out == 0:
            raise ZeroTradingTokens(f"{amount_in} atoms in buys nothing from this pool")
        return total_out

    def _walk(self, amount: int, swap_for_y: bool, now: int, exact_in: bool) -> DlmmSwapResult:
        """The quote loop shared by both modes (quote.rs): fill bins until `amount` is used up."""
        if now < self.volatility.last_update_timestamp:
            raise ValueError("the clock went backwards: now is before the last swap")
        volatility = self.volatility.with_references_updated(self.params, self.active_id, now)
        bins = dict(self.bins)
        active_id = self.active_id
        remaining = amount
        total_in = total_out = total_fee = total_protocol_fee = 0
        while True:
            volatility = volatility.at_bin(self.params, active_id)
            current = bins.get(active_id)
            if current is not None and current.reserve_out(swap_for_y) > 0:
                fill = self._fill(current, active_id, remaining, volatility, swap_for_y, exact_in)
                bins[active_id] = current.after_fill(fill.net_in, fill.amount_out, swap_for_y)
                total_in += fill.amount_in
                total_out += fill.amount_out
                total_fee += fill.fee
                # Floored per bin, as Bin::swap does, so the sum can be below floor(total).
                total_protocol_fee += self.params.protocol_fee(fill.fee)
                remaining -= fill.amount_in if exact_in else fill.amount_out
            if remaining == 0:
                break
            active_id = self._next_bin_with_output(active_id, swap_for_y)
        new_pool = replace(
            self,
            active_id=active_id,
            bins=bins,
            volatility=replace(volatility, last_update_timestamp=now),
        )
        return DlmmSwapResult(
            amount_in=total_in,
            amount_out=total_out,
            fee=total_fee,
            protocol_fee=total_protocol_fee,
            bins_crossed=abs(active_id - self.active_id),
            price_impact_bps=self._impact_bps(total_in - total_fee, total_out, swap_for_y),
            pool=new_pool,
        )

    def _fill(
        self,
        current: Bin,
        bin_id: int,
        remaining: int,
        volatility: VolatilityState,
        swap_for_y: bool,
        exact_in: bool,
    ) -> _BinFill:
        fee_rate = self.params.total_fee_rate(volatility.volatility_accumulator)
        price = self.price_q64(bin_id)
        if exact_in:
            return _fill_exact_in(current, price, remaining, fee_rate, swap_for_y)
        return _fill_exact_out(current, price, remaining, fee_rate, swap_for_y)

    def _next_bin_with_output(self, active_id: int, swap_for_y: bool) -> int:
        """Next bin in the swap direction that holds the output token; bins beyond the active
        one are untouched by the swap so far, so this pool's own bins can be searched."""
        ids = self._sorted_ids
        if swap_for_y:
            candidates = reversed(ids[: bisect_left(ids, active_id)])
        else:
            candidates = iter(ids[bisect_right(ids, active_id) :])
        for bin_id in candidates:
            if self.bins[bin_id].reserve_out(swap_for_y) > 0:
                return bin_id
        raise InsufficientLiquidity("pool out of liquidity: the bin walk ran out of bins")

    def _impact_bps(self, net_in: int, amount_out: int, swap_for_y: bool) -> Fraction:
        """Execution price against the pre-trade active-bin price, fee excluded, in bps."""
        if net_in == 0:
            return Fraction(0)
        price = self.price_q64()
        if swap_for_y:
            ratio = Fraction(amount_out * ONE_Q64, net_in * price)
        else:
            ratio = Fraction(amount_out * price, net_in * ONE_Q64)
        return (1 - ratio) * BASIS_POINT_MAX


@dataclass(frozen=True)
class DlmmSwapResult:
    """Outcome of one DLMM swap.

    `amount_in` is what the trader pays (fees included), `fee` the total fee in input atoms and
    `protocol_fee` the protocol's share of it. `bins_crossed` is how far the active bin moved.
    `price_impact_bps` is the execution price against the pre-trade active-bin price, fee
    excluded, as an exact `Fraction`. `pool` is the state after the swap.
    """

    amount_in: int
    amount_out: int
    fee: int
    protocol_fee: int
    bins_crossed: int
    price_impact_bps: Fraction
    pool: DlmmPool
