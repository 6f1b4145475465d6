"""Meteora DLMM fees: `base + variable` at 1e9 precision, capped at 10 %, the variable part
growing with the volatility accumulator `v_a` (10_000 for every bin the price has moved away
from the reference bin).

Source: MeteoraAg/dlmm-sdk, commons/src/extensions/lb_pair.rs (fee rates, `update_references`,
`update_volatility_accumulator`); docs/venues.md has the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from order_engine.venues.math import ceil_div
from order_engine.venues.math.dlmm_prices import BASIS_POINT_MAX, MAX_BIN_STEP

FEE_PRECISION = 1_000_000_000
MAX_FEE_RATE = 100_000_000  # 10 %
# (v_a * bin_step)^2 * variable_fee_control is scaled down by 1e11 to reach 1e9 precision.
VARIABLE_FEE_SCALE = 100_000_000_000


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
