"""Stored pool state (JSON in `sim_pools.state`) and the operations on it, for both venues.

Raydium pools are constant product (CPMM, fee over 1e6); Meteora pools are DLMM bins with a
base plus volatility-driven fee. Both are run by the exact integer math in `venues.math`. All
functions here are pure: they take a state dict and return results or a new state dict.

The arbitrageur: before anything trades on a pool, the market's arbitrage flow moves the pool's
mid price to where the seeded market says it should be (`market.py`). That is how prices move
between a quote and its execution, and what keeps the two venues within a few percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.venues.errors import AmountTooSmall, NoLiquidity
from order_engine.venues.math import InsufficientLiquidity, VenueMathError, ZeroTradingTokens
from order_engine.venues.math.cpmm import ConstantProductPool
from order_engine.venues.math.dlmm import (
    Bin,
    DlmmParameters,
    DlmmPool,
    VolatilityState,
    bin_id_at_or_below_price,
    exact_price_from_id,
)

BPS = 10_000
FEE_PRECISION = 1_000_000_000
DLMM_BINS_EACH_SIDE = 69  # Meteora's default "spot" shape spans 69 bins


@dataclass(frozen=True)
class SwapOutcome:
    amount_out: int
    fee: int
    fee_bps: Decimal
    price_impact_bps: Fraction
    new_state: dict[str, Any]


# -- creating pools ----------------------------------------------------------------------------


def new_cpmm(reserve_x: int, reserve_y: int, fee_rate: int) -> dict[str, Any]:
    return {
        "kind": "cpmm",
        "reserve_x": str(reserve_x),
        "reserve_y": str(reserve_y),
        "fee_numerator": fee_rate,
        "fee_denominator": 1_000_000,
    }


def new_dlmm(
    mid: Fraction,
    depth_x: int,
    depth_y: int,
    bin_step: int,
    base_factor: int,
    variable_fee_control: int,
) -> dict[str, Any]:
    """A DLMM pool around `mid` (Y atoms per X atom): Y in the bins below, X above."""
    active = bin_id_at_or_below_price(mid, bin_step)
    per_bin_x = depth_x // (DLMM_BINS_EACH_SIDE + 1)
    per_bin_y = depth_y // (DLMM_BINS_EACH_SIDE + 1)
    bins = {active: Bin(per_bin_x // 2, per_bin_y // 2)}
    for offset in range(1, DLMM_BINS_EACH_SIDE + 1):
        bins[active - offset] = Bin(0, per_bin_y)
        bins[active + offset] = Bin(per_bin_x, 0)
    params = DlmmParameters(bin_step, base_factor, variable_fee_control)
    return _dlmm_state(DlmmPool(params, active, bins))


# -- state <-> math objects ------------------------------------------------------------------


def _cp_pool(state: dict[str, Any]) -> ConstantProductPool:
    return ConstantProductPool(
        int(state["reserve_x"]),
        int(state["reserve_y"]),
        int(state["fee_numerator"]),
        int(state["fee_denominator"]),
    )


def _dlmm_pool(state: dict[str, Any]) -> DlmmPool:
    p = state["params"]
    params = DlmmParameters(p["bin_step"], p["base_factor"], p["variable_fee_control"])
    bins = {int(i): Bin(int(x), int(y)) for i, (x, y) in state["bins"].items()}
    v = state["volatility"]
    volatility = VolatilityState(
        v["accumulator"], v["reference"], v["index_reference"], v["last_update"]
    )
    return DlmmPool(params, state["active_id"], bins, volatility)


def _dlmm_state(pool: DlmmPool) -> dict[str, Any]:
    v = pool.volatility
    return {
        "kind": "dlmm",
        "params": {
            "bin_step": pool.params.bin_step,
            "base_factor": pool.params.base_factor,
            "variable_fee_control": pool.params.variable_fee_control,
        },
        "active_id": pool.active_id,
        # Empty bins are dropped: they hold nothing and only grow the row.
        "bins": {
            str(i): [str(b.amount_x), str(b.amount_y)]
            for i, b in pool.bins.items()
            if b.amount_x or b.amount_y
        },
        "volatility": {
            "accumulator": v.volatility_accumulator,
            "reference": v.volatility_reference,
            "index_reference": v.index_reference,
            "last_update": v.last_update_timestamp,
        },
    }


def _with_bookkeeping(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Keep keys the math does not know about (the arbitrage clock)."""
    return {**{k: v for k, v in old.items() if k not in new}, **new}


# -- trading ---------------------------------------------------------------------------------


def swap(state: dict[str, Any], amount_in: int, swap_for_y: bool, now_s: int) -> SwapOutcome:
    """An ExactIn swap on a stored pool state; raises AmountTooSmall / NoLiquidity."""
    try:
        if state["kind"] == "cpmm":
            pool = _cp_pool(state)
            result = pool.swap_exact_in(amount_in, swap_for_y)
            fee_bps = Decimal(pool.fee_numerator * BPS) / Decimal(pool.fee_denominator)
            new_state = new_cpmm(result.pool.reserve_x, result.pool.reserve_y, pool.fee_numerator)
        else:
            dlmm = _dlmm_pool(state)
            # Transactions can be processed slightly out of landing order; the program's clock
            # never goes backwards.
            now_s = max(now_s, dlmm.volatility.last_update_timestamp)
            fee_bps = Decimal(dlmm.fee_rate_at(now_s) * BPS) / FEE_PRECISION
            dlmm_result = dlmm.swap_exact_in(amount_in, swap_for_y, now_s)
            return SwapOutcome(
                dlmm_result.amount_out,
                dlmm_result.fee,
                fee_bps,
                dlmm_result.price_impact_bps,
                _with_bookkeeping(state, _dlmm_state(dlmm_result.pool)),
            )
    except ZeroTradingTokens as exc:
        raise AmountTooSmall(str(exc)) from exc
    except (InsufficientLiquidity, VenueMathError) as exc:
        raise NoLiquidity(str(exc)) from exc
    return SwapOutcome(
        result.amount_out,
        result.fee,
        fee_bps,
        result.price_impact_bps,
        _with_bookkeeping(state, new_state),
    )


def output_function(state: dict[str, Any], swap_for_y: bool, now_s: int):
    """amount_in -> amount_out on this state (None when the pool cannot fill it), for routing.

    Builds the math object once: the split search evaluates it dozens of times per order.
    """
    if state["kind"] == "cpmm":
        cp = _cp_pool(state)

        def run(amount: int) -> int:
            return cp.swap_exact_in(amount, swap_for_y).amount_out
    else:
        dlmm = _dlmm_pool(state)
        at = max(now_s, dlmm.volatility.last_update_timestamp)

        def run(amount: int) -> int:
            return dlmm.swap_exact_in(amount, swap_for_y, at).amount_out

    def output(amount_in: int) -> int | None:
        if amount_in <= 0:
            return 0
        try:
            return run(amount_in)
        except ZeroTradingTokens:
            return 0
        except (InsufficientLiquidity, VenueMathError):
            return None

    return output


def mid_price(state: dict[str, Any]) -> Fraction:
    """Y atoms per X atom at the pool's current mid."""
    if state["kind"] == "cpmm":
        return Fraction(int(state["reserve_y"]), int(state["reserve_x"]))
    return exact_price_from_id(state["active_id"], state["params"]["bin_step"])


def fee_band(state: dict[str, Any]) -> Fraction:
    """How far the mid may sit from its target before arbitrage pays (about the fee)."""
    if state["kind"] == "cpmm":
        return Fraction(int(state["fee_numerator"]), int(state["fee_denominator"]))
    params = state["params"]
    return Fraction(params["base_factor"] * params["bin_step"] * 10, FEE_PRECISION)


def arbitrage(state: dict[str, Any], target: Fraction, now_s: int) -> dict[str, Any]:
    """Trade the pool's mid to `target` (Y atoms per X atom) if it sits outside the fee band."""
    mid = mid_price(state)
    band = fee_band(state)
    if abs(mid / target - 1) <= band:
        return state
    amount, swap_for_y = _arbitrage_trade(state, mid, target)
    if amount <= 0:
        return state
    try:
        return swap(state, amount, swap_for_y, now_s).new_state
    except (AmountTooSmall, NoLiquidity):
        return state


def _arbitrage_trade(state: dict[str, Any], mid: Fraction, target: Fraction) -> tuple[int, bool]:
    """(input atoms, sell X?) that moves the mid to about `target`."""
    selling_x = mid > target  # X is dear in the pool: sell X into it, pushing its price down
    if state["kind"] == "cpmm":
        x, y = int(state["reserve_x"]), int(state["reserve_y"])
        # After the trade x'·y' = k and y'/x' = target, so x' = sqrt(k / target).
        new_x = math.isqrt(x * y * target.denominator // target.numerator)
        new_y = x * y // max(new_x, 1)
        return (new_x - x, True) if selling_x else (new_y - y, False)
    pool = _dlmm_pool(state)
    target_id = bin_id_at_or_below_price(target, pool.params.bin_step)
    if selling_x:
        crossed = [b for i, b in pool.bins.items() if target_id < i <= pool.active_id]
        wanted_y = sum(b.amount_y for b in crossed)
        return _input_for(pool, wanted_y, True), True
    crossed = [b for i, b in pool.bins.items() if pool.active_id <= i < target_id]
    wanted_x = sum(b.amount_x for b in crossed)
    return _input_for(pool, wanted_x, False), False


def _input_for(pool: DlmmPool, amount_out: int, swap_for_y: bool) -> int:
    if amount_out <= 0:
        return 0
    try:
        return pool.swap_exact_out(
            amount_out, swap_for_y, pool.volatility.last_update_timestamp
        ).amount_in
    except VenueMathError:
        return 0
