"""What the trigger engine asks of the market in an evaluation, each thing once: a size class's
quote (2^k atoms at the best venue, per tokenIn), shared by every order of that pair and class,
and an order's own exact quote for its whole amount (the router's decision, its routing).

The class quote is the best single venue's net output for 2^k atoms: a split route pays more
only on amounts whose price impact is large, and the quote of a class must be cheap (two pool
quotes, ~50 µs) and the same wherever it is computed (intake and every evaluation)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from fractions import Fraction

from order_engine.domain.errors import ExecutionError
from order_engine.domain.tokens import Token
from order_engine.domain.triggers import class_amount, unit_price
from order_engine.repositories.trigger import Candidate
from order_engine.routing import RouteDecision, Router, output_function

log = logging.getLogger(__name__)


def class_price(router: Router, token_in: Token, token_out: Token, k: int) -> Fraction | None:
    """The quote of size class k of the pair: the most any venue pays for 2^k atoms, as
    tokenOut per tokenIn; None when no venue can fill it now."""
    amount = class_amount(k)
    refs = router.pools.pools_for(token_in.mint, token_out.mint)
    if not refs:
        return None
    now_s = router.now_s()
    best = 0
    for view in router.pools.views(refs):
        swap_for_y = view.ref.swaps(token_in.mint, token_out.mint)
        if swap_for_y is None:
            continue
        out = output_function(view, swap_for_y, now_s)(amount)
        best = max(best, out or 0)
    return unit_price(best, amount, token_in.one, token_out.one) if best else None


# Tokens of every listed pair, by the symbols (or mints) orders name them with.
Tokens = dict[tuple[str, str], tuple[Token, Token]]


@dataclass(frozen=True)
class Routed:
    """An order's own quote for its whole amount: the route decision the trigger records."""

    token_in: Token
    token_out: Token
    decision: RouteDecision


class MarketView:
    """One evaluation's quotes, each computed once: a class's for every order of it, an order's
    own for each leg and each list it is a candidate in."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._classes: dict[tuple[str, str, int], Fraction | None] = {}
        self._orders: dict[uuid.UUID, RouteDecision | None] = {}

    def class_price(self, token_in: Token, token_out: Token, k: int) -> Fraction | None:
        key = (token_in.mint, token_out.mint, k)
        if key not in self._classes:
            self._classes[key] = class_price(self.router, token_in, token_out, k)
        return self._classes[key]

    def route(
        self, order_id: uuid.UUID, token_in: Token, token_out: Token, amount_in: int
    ) -> RouteDecision | None:
        """The order's own exact quote for its whole amount over both venues (its routing)."""
        if order_id not in self._orders:
            try:
                decision: RouteDecision | None = self.router.route(token_in, token_out, amount_in)
            except (ExecutionError, ValueError) as exc:
                log.debug("order %s: no quote to confirm its trigger (%s)", order_id, exc)
                decision = None
            self._orders[order_id] = decision
        return self._orders[order_id]

    def routed(self, candidate: Candidate, tokens: Tokens) -> Routed | None:
        """A candidate's own quote, if its pair is listed and quotable now."""
        pair = tokens.get((candidate.token_in, candidate.token_out))
        if pair is None:
            return None
        token_in, token_out = pair
        decision = self.route(
            candidate.id, token_in, token_out, token_in.to_atoms(candidate.amount_in)
        )
        return None if decision is None else Routed(token_in, token_out, decision)
