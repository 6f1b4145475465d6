"""The routing decision, a pure function: the pools' quotes in, the legs to swap out.

No I/O here: the quotes are computed from pool states already read (`quote_pool` runs the same
integer math the chain runs at landing), so "best" is simply the most `token_out` for the
client. Outputs are concave in the input (constant product) or piecewise concave (DLMM bins),
so the best split is where the two marginal outputs meet; `venues.math.split` finds it exactly
(docs/venues.md, "Routing and splits"). `router.py` reads the pools and calls `decide`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.chain.pools import PoolView
from order_engine.domain.errors import (
    AmountTooSmall,
    ExecutionError,
    NoLiquidity,
    NoRoute,
    QuoteUnavailable,
)
from order_engine.domain.tokens import Token, decimal_text
from order_engine.routing.quote import Quote
from order_engine.venues.math import InsufficientLiquidity, VenueMathError, ZeroTradingTokens
from order_engine.venues.math.dlmm import FEE_PRECISION
from order_engine.venues.math.split import choose_allocation

BPS = 10_000
# A split costs a second instruction and more compute units: only worth it above this gain.
SPLIT_THRESHOLD_BPS = 3


@dataclass(frozen=True)
class Leg:
    dex: str
    pool_id: str
    amount_in: int
    amount_out: int
    view: PoolView | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RouteDecision:
    legs: Sequence[Leg]
    quotes: Sequence[Quote]
    failures: dict[str, dict[str, object]]
    reason: str
    token_in: Token
    token_out: Token

    @property
    def amount_out(self) -> int:
        return sum(leg.amount_out for leg in self.legs)

    @property
    def dex(self) -> str:
        return "+".join(leg.dex for leg in self.legs)

    def as_event(self) -> dict[str, Any]:
        total_in = sum(leg.amount_in for leg in self.legs)
        return {
            "quotes": [q.as_event() for q in self.quotes],
            "unavailable": self.failures,
            "decision": {
                "dex": self.dex,
                "amountOut": decimal_text(self.token_out.from_atoms(self.amount_out)),
                "legs": [
                    {
                        "dex": leg.dex,
                        "poolId": leg.pool_id,
                        "amountIn": decimal_text(self.token_in.from_atoms(leg.amount_in)),
                        "amountOut": decimal_text(self.token_out.from_atoms(leg.amount_out)),
                        "percent": str(
                            (Decimal(leg.amount_in * 100) / total_in).quantize(Decimal("0.01"))
                        ),
                    }
                    for leg in self.legs
                ],
                "reason": self.reason,
            },
        }


def decide(
    token_in: Token,
    token_out: Token,
    amount_in: int,
    quotes: Sequence[Quote],
    errors: Mapping[str, ExecutionError],
    split_threshold_bps: int = SPLIT_THRESHOLD_BPS,
) -> RouteDecision:
    """The best single venue, or a split across two when it beats that venue by more than
    `split_threshold_bps`; raises the error that best explains why when nothing was quoted."""
    if not quotes:
        raise _no_quote_error(errors)
    ranked = sorted(quotes, key=lambda q: (-q.amount_out, q.dex))
    best = ranked[0]
    legs = [Leg(best.dex, best.pool_id, amount_in, best.amount_out, best.view)]
    reason = _single_reason(best, ranked[1:])
    split = split_legs(ranked, amount_in, split_threshold_bps)
    if split is not None:
        legs, reason = split
    failures = {name: error.as_dict() for name, error in errors.items()}
    return RouteDecision(legs, quotes, failures, reason, token_in, token_out)


def split_legs(
    ranked: Sequence[Quote], amount_in: int, split_threshold_bps: int
) -> tuple[list[Leg], str] | None:
    """Two legs when splitting beats the best venue by more than the threshold."""
    if len(ranked) < 2 or any(q.curve is None for q in ranked[:2]):
        return None
    best, other = ranked[0], ranked[1]
    # A split can gain at most about the best venue's own price impact; skip the search
    # when that is below the threshold (most small orders).
    if best.price_impact_bps < split_threshold_bps:
        return None
    try:
        allocation = choose_allocation(best.curve, other.curve, amount_in, split_threshold_bps)
    except VenueMathError:
        return None
    if not allocation.uses_both_venues:
        return None
    out_best = best.curve(allocation.amount_first) or 0
    out_other = allocation.amount_out - out_best
    gain_bps = (allocation.amount_out - best.amount_out) * 10_000 / best.amount_out
    legs = [
        Leg(best.dex, best.pool_id, allocation.amount_first, out_best, best.view),
        Leg(other.dex, other.pool_id, allocation.amount_second, out_other, other.view),
    ]
    share = allocation.amount_first * 100 / amount_in
    reason = (
        f"split {share:.1f}% {best.dex} / {100 - share:.1f}% {other.dex} pays "
        f"{allocation.amount_out} atoms, +{gain_bps:.2f} bps over {best.dex} alone"
    )
    return legs, reason


def _single_reason(best: Quote, others: Sequence[Quote]) -> str:
    if not others:
        return f"{best.dex} is the only venue quoting this pair"
    runner_up = others[0]
    edge_bps = (best.amount_out - runner_up.amount_out) * 10_000 / max(runner_up.amount_out, 1)
    return (
        f"{best.dex} pays {best.amount_out} atoms vs {runner_up.dex} {runner_up.amount_out}"
        f" (+{edge_bps:.2f} bps net of fees and price impact)"
    )


def _no_quote_error(errors: Mapping[str, ExecutionError]) -> ExecutionError:
    transient = [e for e in errors.values() if e.retryable]
    if transient:
        return QuoteUnavailable("; ".join(e.message for e in transient))
    non_route = [e for e in errors.values() if not isinstance(e, NoRoute)]
    if non_route:
        return non_route[0]
    return NoRoute("no venue lists this pair")


def quote_pool(
    view: PoolView, token_in: Token, token_out: Token, amount_in: int, now_s: int
) -> Quote:
    """One pool's exact quote for selling `amount_in` atoms (the math the chain will run)."""
    swap_for_y = view.ref.swaps(token_in.mint, token_out.mint)
    assert swap_for_y is not None
    output = output_function(view, swap_for_y, now_s)
    try:
        if view.cpmm is not None:
            cp = view.cpmm.swap_exact_in(amount_in, swap_for_y)
            amount_out, fee, impact = cp.amount_out, cp.fee, cp.price_impact_bps
            fee_bps = Decimal(view.cpmm.fee_numerator * BPS) / Decimal(view.cpmm.fee_denominator)
        else:
            assert view.dlmm is not None
            at = max(now_s, view.dlmm.volatility.last_update_timestamp)
            dl = view.dlmm.swap_exact_in(amount_in, swap_for_y, at)
            amount_out, fee, impact = dl.amount_out, dl.fee, dl.price_impact_bps
            fee_bps = Decimal(view.dlmm.fee_rate_at(at) * BPS) / FEE_PRECISION
    except ZeroTradingTokens as exc:
        raise AmountTooSmall(str(exc)) from exc
    except (InsufficientLiquidity, VenueMathError) as exc:
        raise NoLiquidity(f"{view.ref.venue}: {exc}") from exc
    return Quote(
        dex=view.ref.venue,
        pool_id=view.ref.address,
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in,
        amount_out=amount_out,
        fee_atoms=fee,
        fee_bps=fee_bps.quantize(Decimal("0.01")),
        price_impact_bps=_bps(impact),
        slot=view.slot,
        latency_ms=0,
        curve=output,
        view=view,
    )


def output_function(view: PoolView, swap_for_y: bool, now_s: int) -> Callable[[int], int | None]:
    """amount_in -> amount_out on this pool state (None when it cannot fill), for the split."""
    if view.cpmm is not None:
        cp = view.cpmm

        def run(amount: int) -> int:
            return cp.swap_exact_in(amount, swap_for_y).amount_out
    else:
        assert view.dlmm is not None
        dlmm = view.dlmm
        at = max(now_s, dlmm.volatility.last_update_timestamp)

        def run(amount: int) -> int:
            return dlmm.amount_out_exact_in(amount, swap_for_y, at)

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


def _bps(value: Fraction) -> Decimal:
    """A bps figure for display, to 0.01 bps, from the exact fraction."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"))
