"""Pool state in the localnet and the operations on it, for both venues.

Raydium pools are constant product (`ConstantProductPool`, fee over 1e6); Meteora pools are DLMM
bins (`DlmmPool`) with a base plus volatility-driven fee. The localnet keeps these immutable math
objects in memory (no parsing per use) and runs them with the exact integer math of
`order_engine.venues.math`; `to_json` / `from_json` are only for the SQLite snapshot.

The arbitrageur: before anything trades on a pool, and at every slot, the market's arbitrage
flow moves the pool's mid price to where the seeded market says it should be (`market.py`).
That is how prices move between a quote and its landing, and what keeps the two venues within a
few percent. A DLMM pool whose bins cannot reach the target (a big `move`) is re-centred by its
liquidity providers around the new price, keeping its value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from order_engine.venues.math import InsufficientLiquidity, VenueMathError, ZeroTradingTokens
from order_engine.venues.math.cpmm import CPMM_FEE_RATE_DENOMINATOR, ConstantProductPool
from order_engine.venues.math.dlmm import (
    FEE_PRECISION,
    Bin,
    DlmmParameters,
    DlmmPool,
    VolatilityState,
    bin_id_at_or_below_price,
    price_q64_from_id,
    q64_to_fraction,
)

Pool = ConstantProductPool | DlmmPool

DLMM_BINS_EACH_SIDE = 69  # Meteora's default "spot" shape spans 69 bins

__all__ = [
    "InsufficientLiquidity",
    "Pool",
    "SwapOutcome",
    "VenueMathError",
    "ZeroTradingTokens",
]


@dataclass(frozen=True)
class SwapOutcome:
    amount_in: int
    amount_out: int
    fee: int
    pool: Pool


# -- creating pools ----------------------------------------------------------------------------


def new_cpmm(reserve_x: int, reserve_y: int, fee_rate: int) -> ConstantProductPool:
    # Protocol and fund shares are zero: the whole fee stays in the curve, so each vault holds
    # exactly the curve's reserve (CP-Swap's `vault_amount_without_fee`, docs/venues.md).
    return ConstantProductPool.raydium_cpmm(reserve_x, reserve_y, fee_rate)


def new_dlmm(
    mid: Fraction,
    depth_x: int,
    depth_y: int,
    bin_step: int,
    base_factor: int,
    variable_fee_control: int,
    volatility: VolatilityState | None = None,
) -> DlmmPool:
    """A DLMM pool around `mid` (Y atoms per X atom): Y in the bins below, X above."""
    active = bin_id_at_or_below_price(mid, bin_step)
    per_bin_x = depth_x // (DLMM_BINS_EACH_SIDE + 1)
    per_bin_y = depth_y // (DLMM_BINS_EACH_SIDE + 1)
    bins = {active: Bin(per_bin_x // 2, per_bin_y // 2)}
    for offset in range(1, DLMM_BINS_EACH_SIDE + 1):
        bins[active - offset] = Bin(0, per_bin_y)
        bins[active + offset] = Bin(per_bin_x, 0)
    params = DlmmParameters(bin_step, base_factor, variable_fee_control)
    return DlmmPool(params, active, bins, volatility or VolatilityState())


def drained(pool: Pool) -> Pool:
    """The pool with every atom of liquidity removed."""
    if isinstance(pool, ConstantProductPool):
        return ConstantProductPool(0, 0, pool.fee_numerator, pool.fee_denominator)
    return DlmmPool(pool.params, pool.active_id, {}, pool.volatility)


def reserves(pool: Pool) -> tuple[int, int]:
    """(X atoms, Y atoms) the pool holds: its vault balances."""
    if isinstance(pool, ConstantProductPool):
        return pool.reserve_x, pool.reserve_y
    return (
        sum(b.amount_x for b in pool.bins.values()),
        sum(b.amount_y for b in pool.bins.values()),
    )


# -- trading ---------------------------------------------------------------------------------


def swap(pool: Pool, amount_in: int, swap_for_y: bool, now_s: int) -> SwapOutcome:
    """An ExactIn swap; raises the math's ZeroTradingTokens / InsufficientLiquidity."""
    if isinstance(pool, ConstantProductPool):
        result = pool.swap_exact_in(amount_in, swap_for_y)
        return SwapOutcome(result.amount_in, result.amount_out, result.fee, result.pool)
    # Transactions can be processed slightly out of landing order; the program's clock never
    # goes backwards.
    now_s = max(now_s, pool.volatility.last_update_timestamp)
    dlmm = pool.swap_exact_in(amount_in, swap_for_y, now_s)
    return SwapOutcome(dlmm.amount_in, dlmm.amount_out, dlmm.fee, _compact(dlmm.pool))


def _compact(pool: DlmmPool) -> DlmmPool:
    """Drop emptied bins: they hold nothing and only grow the bin arrays and the snapshot."""
    if all(b.amount_x or b.amount_y for b in pool.bins.values()):
        return pool
    bins = {i: b for i, b in pool.bins.items() if b.amount_x or b.amount_y}
    return DlmmPool(pool.params, pool.active_id, bins, pool.volatility)


def mid_price(pool: Pool) -> Fraction | None:
    """Y atoms per X atom at the pool's current mid; None for an empty CPMM pool."""
    if isinstance(pool, ConstantProductPool):
        if pool.reserve_x == 0 or pool.reserve_y == 0:
            return None
        return Fraction(pool.reserve_y, pool.reserve_x)
    # The program's own (cached) Q64.64 bin price: exact powers are slow for far-off bins.
    return q64_to_fraction(price_q64_from_id(pool.active_id, pool.params.bin_step))


def fee_band(pool: Pool) -> Fraction:
    """How far the mid may sit from its target before arbitrage pays (about the fee)."""
    if isinstance(pool, ConstantProductPool):
        return Fraction(pool.fee_numerator, pool.fee_denominator)
    params = pool.params
    return Fraction(params.base_factor * params.bin_step * 10, FEE_PRECISION)


def arbitrage(pool: Pool, target: Fraction, now_s: int) -> Pool:
    """Trade the pool's mid to `target` (Y atoms per X atom) if it sits outside the fee band."""
    mid = mid_price(pool)
    if mid is None or (isinstance(pool, DlmmPool) and not pool.bins):
        return pool  # drained: nothing to trade against
    band = fee_band(pool)
    if abs(mid / target - 1) <= band:
        return pool
    amount, swap_for_y = _arbitrage_trade(pool, mid, target)
    moved = pool
    if amount > 0:
        try:
            moved = swap(pool, amount, swap_for_y, now_s).pool
        except VenueMathError:
            moved = pool
    if isinstance(moved, DlmmPool):
        after = mid_price(moved)
        if after is None or abs(after / target - 1) > 2 * band:
            return _recentred(moved, target)
    return moved


def _recentred(pool: DlmmPool, target: Fraction) -> DlmmPool:
    """Liquidity providers move their bins around `target`, keeping the pool's value."""
    amount_x, amount_y = reserves(pool)
    value_y = amount_x * target + amount_y
    half_y = int(value_y / 2)
    half_x = int(value_y / 2 / target)
    if half_x <= 0 or half_y <= 0:
        return pool
    # new_dlmm puts depth/70 in each of 69 bins a side plus half a share in the active bin:
    # 139/140 of the depth on each side.
    try:
        return new_dlmm(
            target,
            half_x * 140 // 139,
            half_y * 140 // 139,
            pool.params.bin_step,
            pool.params.base_factor,
            pool.params.variable_fee_control,
            pool.volatility,
        )
    except ValueError:
        return pool


def _arbitrage_trade(pool: Pool, mid: Fraction, target: Fraction) -> tuple[int, bool]:
    """(input atoms, sell X?) that moves the mid to about `target`."""
    selling_x = mid > target  # X is dear in the pool: sell X into it, pushing its price down
    if isinstance(pool, ConstantProductPool):
        x, y = pool.reserve_x, pool.reserve_y
        # After the trade x'·y' = k and y'/x' = target, so x' = sqrt(k / target).
        new_x = math.isqrt(x * y * target.denominator // target.numerator)
        new_y = x * y // max(new_x, 1)
        return (new_x - x, True) if selling_x else (new_y - y, False)
    target_id = bin_id_at_or_below_price(target, pool.params.bin_step)
    if selling_x:
        crossed = [b for i, b in pool.bins.items() if target_id < i <= pool.active_id]
        return _input_for(pool, sum(b.amount_y for b in crossed), True), True
    crossed = [b for i, b in pool.bins.items() if pool.active_id <= i < target_id]
    return _input_for(pool, sum(b.amount_x for b in crossed), False), False


def _input_for(pool: DlmmPool, amount_out: int, swap_for_y: bool) -> int:
    if amount_out <= 0:
        return 0
    try:
        return pool.swap_exact_out(
            amount_out, swap_for_y, pool.volatility.last_update_timestamp
        ).amount_in
    except VenueMathError:
        return 0


# -- snapshot --------------------------------------------------------------------------------


def to_json(pool: Pool) -> dict[str, Any]:
    if isinstance(pool, ConstantProductPool):
        return {
            "kind": "cpmm",
            "reserve_x": str(pool.reserve_x),
            "reserve_y": str(pool.reserve_y),
            "fee_numerator": pool.fee_numerator,
        }
    v = pool.volatility
    p = pool.params
    return {
        "kind": "dlmm",
        "params": [p.bin_step, p.base_factor, p.variable_fee_control],
        "active_id": pool.active_id,
        "bins": [[i, str(b.amount_x), str(b.amount_y)] for i, b in sorted(pool.bins.items())],
        "volatility": [
            v.volatility_accumulator,
            v.volatility_reference,
            v.index_reference,
            v.last_update_timestamp,
        ],
    }


def from_json(state: dict[str, Any]) -> Pool:
    if state["kind"] == "cpmm":
        return ConstantProductPool(
            int(state["reserve_x"]),
            int(state["reserve_y"]),
            int(state["fee_numerator"]),
            CPMM_FEE_RATE_DENOMINATOR,
        )
    params = DlmmParameters(*state["params"])
    bins = {int(i): Bin(int(x), int(y)) for i, x, y in state["bins"]}
    return DlmmPool(params, int(state["active_id"]), bins, VolatilityState(*state["volatility"]))
