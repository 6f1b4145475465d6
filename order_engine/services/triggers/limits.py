"""Limit and sniper orders: they wait for the market to rise to them.

For every pair the venues list (a launch appears within a second of its pool's creation,
PoolIndex rediscovery) the engine computes an upper bound of the price any order of that pair
can fill at: the best venue's marginal price after its base fee. An order's average fill price
never exceeds it (outputs are concave in the input: constant product, or DLMM bins walked away
from the active price), so only the orders whose `trigger_price` is at or below the bound can
trigger; one indexed range query per pair finds them (`TriggerRepository.candidates`). A sniper
is the same thing on a pair that did not exist: its `token_out` is the awaited mint, which joins
the listed pairs when its pool appears. The same query finds a bracket's take-profit and a
trailing stop's activation price, which wait on the same index (brackets.py, trailing.py).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from order_engine.chain.client import Chain
from order_engine.chain.mints import symbol_of, token_for
from order_engine.chain.pools import PoolView
from order_engine.domain.amounts import required_out_atoms
from order_engine.domain.errors import ExecutionError
from order_engine.domain.tokens import Token, decimal_text
from order_engine.domain.triggers import PRICE_QUANTUM
from order_engine.repositories.trigger import Candidate, PairBound
from order_engine.routing import Router
from order_engine.services.triggers.describe import waiting_for
from order_engine.services.triggers.market import MarketView, Tokens
from order_engine.venues.math import VenueMathError
from order_engine.venues.math.dlmm import FEE_PRECISION


def sniper_trigger_price(max_price: Decimal | None) -> Decimal:
    """The index key of a sniper: 1/maxPrice rounded down (a superset of what can fill)."""
    if max_price is None:
        return Decimal(0)
    return (Decimal(1) / max_price).quantize(PRICE_QUANTUM, rounding=ROUND_FLOOR)


def pool_price_bound(view: PoolView, mint_in: str, mint_out: str) -> Fraction | None:
    """An upper bound of out/in (atoms per atom) of any swap of `mint_in` for `mint_out` on
    this pool state: the marginal price after the base fee. None if the pool cannot quote."""
    swap_for_y = view.ref.swaps(mint_in, mint_out)
    if swap_for_y is None:
        return None
    try:
        if view.cpmm is not None:
            cp = view.cpmm
            reserve_in, reserve_out = cp.reserves(swap_for_y)
            if reserve_in <= 0 or reserve_out <= 0:
                return None
            keep = 1 - Fraction(cp.fee_numerator, cp.fee_denominator)
            return Fraction(reserve_out, reserve_in) * keep
        if view.dlmm is not None:
            price = view.dlmm.spot_price()  # Y atoms per X atom in the active bin
            keep = 1 - Fraction(view.dlmm.params.base_fee_rate(), FEE_PRECISION)
            return (price if swap_for_y else 1 / price) * keep
    except (VenueMathError, ValueError, ZeroDivisionError):
        return None
    return None


def ui_price_bound(bound_atoms: Fraction, token_in: Token, token_out: Token) -> Decimal:
    """The atoms bound as tokenOut per one tokenIn, rounded up to the stored precision."""
    ui = bound_atoms * token_in.one / token_out.one
    return (Decimal(ui.numerator) / Decimal(ui.denominator)).quantize(
        PRICE_QUANTUM, rounding=ROUND_CEILING
    )


def meets(quoted_out: int, required: int) -> bool:
    """A limit triggers exactly when the engine's own quote pays at least what it requires."""
    return quoted_out >= required


def pair_bounds(router: Router, chain: Chain) -> tuple[list[PairBound], Tokens]:
    """Every listed pair (both directions) with its best-price bound, read from the pool
    states of this slot (one account read for all pools, shared with the router)."""
    pools = router.pools
    refs = pools.all_pools(max_age_s=1.0)
    best: dict[tuple[str, str], Fraction] = {}
    for view in pools.views(refs):
        for mint_in, mint_out in (
            (view.ref.mint_x, view.ref.mint_y),
            (view.ref.mint_y, view.ref.mint_x),
        ):
            bound = pool_price_bound(view, mint_in, mint_out)
            if bound is not None and bound > best.get((mint_in, mint_out), Fraction(-1)):
                best[(mint_in, mint_out)] = bound
    bounds, tokens = [], {}
    for (mint_in, mint_out), bound in best.items():
        try:
            token_in, token_out = (
                token_for(chain, mint_in),
                token_for(chain, mint_out),
            )
        except ExecutionError:
            continue
        pair = (symbol_of(mint_in), symbol_of(mint_out))
        tokens[pair] = (token_in, token_out)
        bounds.append(PairBound(*pair, ui_price_bound(bound, token_in, token_out)))
    return bounds, tokens


def confirm_limit(
    candidate: Candidate, tokens: Tokens, market: MarketView
) -> dict[str, Any] | None:
    """The trigger event's data if the order's own exact quote meets its price, else None."""
    routed = market.routed(candidate, tokens)
    if routed is None:
        return None
    token_out, decision = routed.token_out, routed.decision
    required = required_out_atoms(
        candidate.amount_in, candidate.limit_price, candidate.max_price, token_out.decimals
    )
    if not meets(decision.amount_out, required):
        return None
    # This quote is the order's routing: the venues quoted for its whole amount and the
    # best net route chosen, as a market order's `routing` event records it. The executor
    # builds from a fresh quote of its own slot (its `building` event names that route).
    return {
        "triggered": waiting_for(
            candidate.type, candidate.token_out, candidate.limit_price, candidate.max_price
        ),
        "requiredAmountOut": decimal_text(token_out.from_atoms(required)),
        **decision.as_event(),
    }
