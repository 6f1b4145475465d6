"""Meteora DLMM: a ladder of constant-sum price bins with a volatility-driven fee.

Prices are Q64.64 fixed-point integers computed by the program's own algorithm (square and
multiply, flooring every product, inverting through `u128::MAX // x`), so a bin price here is
meant to be bit-identical to the on-chain `get_price_from_id`. A price is in atoms of Y per atom
of X. `exact_price_from_id` gives the mathematically exact `Fraction` for reports and tests.

Inside a bin the swap is constant-sum (no price impact); when a bin's output reserve is used up
the walk moves to the next bin (down for X -> Y, up for Y -> X). The fee rate, at 1e9 precision,
is `base + variable` capped at 10 %, where the variable part grows with the volatility
accumulator `v_a`: 10_000 for every bin the price has moved away from the reference bin.

Its prices are `dlmm_prices`, its fees `dlmm_fees`. Sources (MeteoraAg/dlmm-sdk):
* commons/src/extensions/bin.rs -- per-bin swap, `get_amount_in` / `get_amount_out` rounding
* commons/src/quote.rs -- the bin walk for ExactIn and ExactOut quotes
and https://docs.meteora.ag/overview/products/dlmm/dlmm-formulas (docs/venues.md).

Deliberate differences from the program, all in the simulator's favour of simplicity:
* bins live in one mapping, not in 70-bin arrays, so there is no 3-array quote limit;
* Token-2022 transfer fees and limit orders are not modelled;
* an ExactIn swap that would return zero atoms raises `ZeroTradingTokens` (the program would take
  the dust and return nothing, which no router wants);
* `update_references` decays with `v_a * reduction_factor / 10_000`, the canonical form; one SDK
  revision has `checked_sub` there, which docs/venues.md treats as a typo.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType

from order_engine.venues.math import (
    InsufficientLiquidity,
    ZeroTradingTokens,
    ceil_div,
    require_positive_atoms,
)
from order_engine.venues.math.dlmm_fees import (
    FEE_PRECISION,
    MAX_FEE_RATE,
    DlmmParameters,
    VolatilityState,
    fee_on_gross_amount,
    fee_on_net_amount,
)
from order_engine.venues.math.dlmm_prices import (
    BASIS_POINT_MAX,
    MAX_BIN_ID,
    MIN_BIN_ID,
    ONE_Q64,
    SCALE_OFFSET,
    bin_id_at_or_below_price,
    exact_price_from_id,
    price_q64_from_id,
    q64_to_fraction,
)

__all__ = [
    "FEE_PRECISION",
    "MAX_BIN_ID",
    "MAX_FEE_RATE",
    "MIN_BIN_ID",
    "Bin",
    "DlmmParameters",
    "DlmmPool",
    "DlmmSwapResult",
    "VolatilityState",
    "bin_id_at_or_below_price",
    "exact_price_from_id",
    "price_q64_from_id",
    "q64_to_fraction",
]


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
        new_pool = self._after_walk(active_id, bins, replace(volatility, last_update_timestamp=now))
        return DlmmSwapResult(
            amount_in=total_in,
            amount_out=total_out,
            fee=total_fee,
            protocol_fee=total_protocol_fee,
            bins_crossed=abs(active_id - self.active_id),
            price_impact_bps=self._impact_bps(total_in - total_fee, total_out, swap_for_y),
            pool=new_pool,
        )

    def _after_walk(
        self, active_id: int, bins: dict[int, Bin], volatility: VolatilityState
    ) -> DlmmPool:
        """This pool after a walk, built without `__post_init__`: a walk changes the amounts
        of bins this pool holds and stops on one of them (or the active bin it started on), so
        the ids, their order and their prices are this pool's, already checked. The router
        builds one per DLMM quote; checking and sorting them again was a third of a quote."""
        pool = object.__new__(DlmmPool)
        for name, value in (
            ("params", self.params),
            ("active_id", active_id),
            ("bins", MappingProxyType(bins)),
            ("volatility", volatility),
            ("_sorted_ids", self._sorted_ids),
        ):
            object.__setattr__(pool, name, value)
        return pool

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
