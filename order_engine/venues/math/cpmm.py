"""Raydium constant-product pools: CPMM (Standard AMM) and the legacy AMM v4.

Both are `x * y = k` with the trade fee taken from the input, and both round against the trader:
the fee and an ExactOut input round up, an output rounds down, so `k` never decreases.

Sources:
* raydium-io/raydium-cp-swap: programs/cp-swap/src/curve/constant_product.rs
  (`swap_base_input_without_fees`: `out = floor(net * y / (x + net))`;
  `swap_base_output_without_fees`: `net = ceil(x * out / (y - out))`)
* raydium-io/raydium-cp-swap: programs/cp-swap/src/curve/fees.rs
  (`trading_fee = ceil(amount * rate / 1e6)`; `calculate_pre_fee_amount` grosses up with ceil;
  protocol and fund fees are floored fractions of the trade fee)
* raydium-io/raydium-docs-v1: products/amm-v4/math.mdx (AMM v4: 25 / 10_000 of the input)

docs/venues.md ("Raydium CPMM") collects these; its golden vector is
1e9 in on reserves 1e12 / 2e12 at 0.25 % -> 1_993_011_970 out, fee 2_500_000.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

from order_engine.venues.math import (
    InsufficientLiquidity,
    ZeroTradingTokens,
    ceil_div,
    require_positive_atoms,
)

CPMM_FEE_RATE_DENOMINATOR = 1_000_000
CPMM_FEE_TIERS = (100, 2_500, 10_000)  # 0.01 %, 0.25 % (default), 1 % of the input
AMM_V4_FEE_NUMERATOR = 25
AMM_V4_FEE_DENOMINATOR = 10_000
# Protocol and fund fees are fractions of the trade fee, over this denominator in both programs.
PROTOCOL_FEE_DENOMINATOR = 1_000_000
BPS = 10_000


@dataclass(frozen=True)
class ConstantProductPool:
    """State of one constant-product pool of tokens X and Y.

    `reserve_x` / `reserve_y` are the reserves the curve sees (vault balances minus accrued
    protocol and fund fees). `fee_numerator / fee_denominator` is the trade fee on the input.
    `protocol_fee_rate` and `fund_fee_rate` are the shares of that fee, over 1_000_000, that leave
    the curve; the rest stays in the pool for LPs, which is what makes `k` grow.
    """

    reserve_x: int
    reserve_y: int
    fee_numerator: int
    fee_denominator: int
    protocol_fee_rate: int = 0
    fund_fee_rate: int = 0

    def __post_init__(self) -> None:
        for name in (
            "reserve_x",
            "reserve_y",
            "fee_numerator",
            "fee_denominator",
            "protocol_fee_rate",
            "fund_fee_rate",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not 0 <= self.fee_numerator < self.fee_denominator:
            raise ValueError("the fee must be a fraction in [0, 1)")
        if self.protocol_fee_rate + self.fund_fee_rate > PROTOCOL_FEE_DENOMINATOR:
            raise ValueError("protocol and fund shares cannot exceed the whole trade fee")

    @classmethod
    def raydium_cpmm(
        cls,
        reserve_x: int,
        reserve_y: int,
        trade_fee_rate: int = 2_500,
        protocol_fee_rate: int = 0,
        fund_fee_rate: int = 0,
    ) -> ConstantProductPool:
        """A Raydium CPMM pool; `trade_fee_rate` is over 1_000_000 (tiers 100 / 2_500 / 10_000)."""
        return cls(
            reserve_x,
            reserve_y,
            trade_fee_rate,
            CPMM_FEE_RATE_DENOMINATOR,
            protocol_fee_rate,
            fund_fee_rate,
        )

    @classmethod
    def raydium_amm_v4(
        cls, reserve_x: int, reserve_y: int, protocol_fee_rate: int = 0
    ) -> ConstantProductPool:
        """A Raydium AMM v4 pool: 25 / 10_000 of the input (0.25 %).

        On chain 12 % of that fee is the protocol's "pnl" share (`protocol_fee_rate=120_000`),
        taken out of the reserves; the default 0 leaves the whole fee in the curve.
        """
        return cls(
            reserve_x, reserve_y, AMM_V4_FEE_NUMERATOR, AMM_V4_FEE_DENOMINATOR, protocol_fee_rate
        )

    @property
    def invariant(self) -> int:
        """The constant product `k = x * y`."""
        return self.reserve_x * self.reserve_y

    def reserves(self, swap_for_y: bool) -> tuple[int, int]:
        """(reserve of the input token, reserve of the output token) for a swap direction."""
        if swap_for_y:
            return self.reserve_x, self.reserve_y
        return self.reserve_y, self.reserve_x

    def spot_price(self, swap_for_y: bool = True) -> Fraction:
        """Pre-trade mid price in output atoms per input atom (no fee), exact."""
        reserve_in, reserve_out = self.reserves(swap_for_y)
        self._require_liquidity(reserve_in, reserve_out)
        return Fraction(reserve_out, reserve_in)

    def trade_fee(self, amount_in: int) -> int:
        """Trade fee charged on a gross input, rounded up (raydium-cp-swap fees.rs)."""
        return ceil_div(amount_in * self.fee_numerator, self.fee_denominator)

    def swap_exact_in(self, amount_in: int, swap_for_y: bool = True) -> CpSwapResult:
        """Sell exactly `amount_in` atoms; the output is floored.

        Raises `InsufficientLiquidity` on an empty pool and `ZeroTradingTokens` when the trade
        is too small to buy one atom.
        """
        require_positive_atoms(amount_in, "amount_in")
        reserve_in, reserve_out = self.reserves(swap_for_y)
        self._require_liquidity(reserve_in, reserve_out)
        fee = self.trade_fee(amount_in)
        net_in = amount_in - fee
        amount_out = net_in * reserve_out // (reserve_in + net_in)
        if amount_out == 0:
            raise ZeroTradingTokens(f"{amount_in} atoms in buys nothing from this pool")
        return self._result(amount_in, net_in, amount_out, fee, swap_for_y)

    def swap_exact_out(self, amount_out: int, swap_for_y: bool = True) -> CpSwapResult:
        """Buy exactly `amount_out` atoms; the input before and after the fee is rounded up.

        Raises `InsufficientLiquidity` when the pool holds `amount_out` atoms or fewer.
        """
        require_positive_atoms(amount_out, "amount_out")
        reserve_in, reserve_out = self.reserves(swap_for_y)
        self._require_liquidity(reserve_in, reserve_out)
        if amount_out >= reserve_out:
            raise InsufficientLiquidity(
                f"asked for {amount_out} atoms but the pool holds only {reserve_out}"
            )
        net_in = ceil_div(reserve_in * amount_out, reserve_out - amount_out)
        # Gross up so that the fee charged on the gross input leaves at least `net_in`.
        gross_in = ceil_div(
            net_in * self.fee_denominator, self.fee_denominator - self.fee_numerator
        )
        return self._result(gross_in, net_in, amount_out, gross_in - net_in, swap_for_y)

    def _result(
        self, amount_in: int, net_in: int, amount_out: int, fee: int, swap_for_y: bool
    ) -> CpSwapResult:
        reserve_in, reserve_out = self.reserves(swap_for_y)
        protocol_fee = self._protocol_share(fee)
        # The protocol/fund share is accrued outside the curve; the LP share of the fee stays in.
        new_in = reserve_in + amount_in - protocol_fee
        new_out = reserve_out - amount_out
        if swap_for_y:
            pool = replace(self, reserve_x=new_in, reserve_y=new_out)
        else:
            pool = replace(self, reserve_x=new_out, reserve_y=new_in)
        # Execution price vs the pre-trade mid, fee excluded (docs/venues.md):
        # 1 - (out / net_in) / (y / x).
        impact = 1 - Fraction(amount_out * reserve_in, net_in * reserve_out)
        return CpSwapResult(
            amount_in=amount_in,
            amount_out=amount_out,
            fee=fee,
            protocol_fee=protocol_fee,
            price_impact_bps=impact * BPS,
            pool=pool,
        )

    def _protocol_share(self, fee: int) -> int:
        # Floored separately, as the program computes protocol_fee and fund_fee separately.
        protocol = fee * self.protocol_fee_rate // PROTOCOL_FEE_DENOMINATOR
        fund = fee * self.fund_fee_rate // PROTOCOL_FEE_DENOMINATOR
        return protocol + fund

    @staticmethod
    def _require_liquidity(reserve_in: int, reserve_out: int) -> None:
        if reserve_in == 0 or reserve_out == 0:
            raise InsufficientLiquidity("the pool has an empty reserve")


@dataclass(frozen=True)
class CpSwapResult:
    """Outcome of one constant-product swap.

    `amount_in` is what the trader pays (fee included), `fee` the trade fee in input atoms,
    `protocol_fee` the part of it that leaves the curve. `price_impact_bps` is the execution
    price against the pre-trade mid, fee excluded, as an exact `Fraction` of basis points.
    `pool` is the state after the swap; the original pool is unchanged.
    """

    amount_in: int
    amount_out: int
    fee: int
    protocol_fee: int
    price_impact_bps: Fraction
    pool: ConstantProductPool
