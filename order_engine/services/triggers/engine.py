"""The trigger engine: limit and sniper orders wait in PostgreSQL until the market meets them.

Each evaluation (a Celery beat task, about once per slot) does three things:

1. Expire the waiting orders whose `expiresAt` has passed (`failed`, ORDER_EXPIRED).
2. For every pair the venues list (a launch appears within a second of its pool's creation,
   PoolIndex rediscovery), compute an upper bound of the price any order of that pair can fill
   at: the best venue's marginal price after its base fee. An order's average fill price never
   exceeds it (outputs are concave in the input: constant product, or DLMM bins walked away
   from the active price), so only the orders whose `trigger_price` is at or below the bound
   can trigger; one indexed range query per pair finds them (`TriggerRepository.candidates`).
   A sniper is the same thing on a pair that did not exist: its `token_out` is the awaited
   mint, which joins the listed pairs when its pool appears.
3. Route each candidate: its own exact quote for its whole amount over both venues
   (Router.route, fees and price impact included). Those that meet their limit move to
   `routing` with that route decision, by one compare-and-set for all of them, and the
   ordinary `execute_order` task of each order moved is sent. The executor claims a
   `routing` order that no lease holds, quotes again in its own slot and builds from that.

So the work per evaluation grows with the candidates (orders at or near their limit), not with
the orders that wait. Exactly once: the compare-and-set moves an order once whoever runs it;
an order triggered but not dispatched (a crash in between, Redis emptied) is a `routing` order
with no lease that the reconciler re-dispatches; the worker's claim runs it once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.orm import Session

from order_engine.chain.client import Chain
from order_engine.chain.mints import symbol_of, token_for
from order_engine.chain.pools import PoolView
from order_engine.config import Settings
from order_engine.domain.amounts import required_out_atoms
from order_engine.domain.errors import ExecutionError
from order_engine.domain.tokens import Token, decimal_text
from order_engine.infra import metrics
from order_engine.infra.db import unit_of_work
from order_engine.live.events import Publisher, app_publisher, event_payload
from order_engine.models import OrderType
from order_engine.repositories.trigger import Candidate, PairBound, TriggerRepository
from order_engine.routing import Router
from order_engine.tasking import dispatch
from order_engine.venues.math import VenueMathError
from order_engine.venues.math.dlmm import FEE_PRECISION

log = logging.getLogger(__name__)

# numeric(38, 18): prices are stored with 18 decimals.
PRICE_QUANTUM = Decimal("1e-18")
# At most this many candidates per pair per evaluation are quoted (lowest trigger price
# first); the rest are looked at in the next evaluation.
CANDIDATES_PER_PAIR = 1_000
EXPIRE_BATCH = 1_000


class OrderExpired(ExecutionError):
    code, retryable = "ORDER_EXPIRED", False


# -- the pure core --------------------------------------------------------------------------


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


def waiting_for(
    order_type: str, token_out: str, limit_price: Decimal | None, max_price: Decimal | None
) -> dict[str, Any]:
    """What a waiting order waits for, as its events say it."""
    if order_type == OrderType.SNIPER.value:
        pool: dict[str, Any] = {"pool": {"mint": token_out}}
        if max_price is not None:
            pool["maxPrice"] = _plain(max_price)
        return pool
    return {"limitPrice": _plain(limit_price) if limit_price is not None else None}


def _plain(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f")


# -- the service ----------------------------------------------------------------------------


@dataclass
class Evaluation:
    pairs: int = 0
    candidates: int = 0
    quoted: int = 0
    triggered: list[uuid.UUID] = field(default_factory=list)
    expired: int = 0
    elapsed_ms: float = 0.0


class TriggerService:
    def __init__(
        self,
        session: Session,
        router: Router,
        chain: Chain,
        publisher: Publisher,
        settings: Settings,
        send_many: Callable[[list[uuid.UUID]], None] = dispatch.enqueue_execute_orders,
    ) -> None:
        self.session = session
        self.triggers = TriggerRepository(session)
        self.router = router
        self.chain = chain
        self.publisher = publisher
        self.settings = settings
        self.send_many = send_many

    def evaluate(self) -> Evaluation:
        """One evaluation: expire, select candidates by pair and price, confirm, trigger."""
        started = time.perf_counter()
        result = Evaluation()
        if not self.triggers.any_waiting():
            # Nothing to expire or trigger: no pool states to read, no candidates to select.
            # Run twice a second, those cost a worker under a market-order load 8 % of its
            # CPU (by profile) while no limit or sniper order waited.
            return result
        result.expired = self._expire()
        bounds, tokens = self.pair_bounds()
        result.pairs = len(bounds)
        with unit_of_work(self.session):  # one statement: atomic alone
            candidates = self.triggers.candidates(bounds, CANDIDATES_PER_PAIR)
        result.candidates = len(candidates)
        ready = []
        for candidate in candidates:
            data = self._confirm(candidate, tokens)
            result.quoted += 1
            if data is not None:
                ready.append((candidate.id, data))
        # One compare-and-set for all: committing in batches would let the first batch's
        # executions (on this worker's event loop) hold up the quotes of the rest.
        result.triggered = self.trigger(ready)
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        if result.triggered or result.expired:
            log.info(
                "triggers: %d pairs, %d candidates, %d triggered, %d expired in %.1f ms",
                result.pairs,
                result.candidates,
                len(result.triggered),
                result.expired,
                result.elapsed_ms,
            )
        return result

    def pair_bounds(self) -> tuple[list[PairBound], dict[tuple[str, str], tuple[Token, Token]]]:
        """Every listed pair (both directions) with its best-price bound, read from the pool
        states of this slot (one account read for all pools, shared with the router)."""
        pools = self.router.pools
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
                    token_for(self.chain, mint_in),
                    token_for(self.chain, mint_out),
                )
            except ExecutionError:
                continue
            pair = (symbol_of(mint_in), symbol_of(mint_out))
            tokens[pair] = (token_in, token_out)
            bounds.append(PairBound(*pair, ui_price_bound(bound, token_in, token_out)))
        return bounds, tokens

    def trigger(self, ready: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> list[uuid.UUID]:
        """Move the orders from waiting to `routing` (compare-and-set, one statement), publish
        their events, then send the execution task of each order that moved."""
        if not ready:
            return []
        with unit_of_work(self.session):
            events = self.triggers.trigger(ready)
        self.publisher.publish_many([event_payload(e) for e in events])
        moved = [e.order_id for e in events]
        if moved:
            try:
                self.send_many(moved)  # one round trip to a Redis broker
            except Exception as exc:  # noqa: BLE001 - broker down: the reconciler sends them
                log.warning(
                    "%d triggered orders not queued (%s); the reconciler will: %s",
                    len(moved),
                    exc,
                    ", ".join(str(order_id) for order_id in moved),
                )
        return moved

    def _confirm(
        self, candidate: Candidate, tokens: dict[tuple[str, str], tuple[Token, Token]]
    ) -> dict[str, Any] | None:
        """The trigger event's data if the order's own exact quote meets its price, else None."""
        pair = tokens.get((candidate.token_in, candidate.token_out))
        if pair is None:
            return None
        token_in, token_out = pair
        try:
            amount_atoms = token_in.to_atoms(candidate.amount_in)
            decision = self.router.route(token_in, token_out, amount_atoms)
        except (ExecutionError, ValueError) as exc:
            log.debug("order %s: no quote to confirm its trigger (%s)", candidate.id, exc)
            return None
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

    def _expire(self) -> int:
        error = OrderExpired("the order reached its expiresAt before it triggered").as_dict()
        with unit_of_work(self.session):
            expired = self.triggers.expire(EXPIRE_BATCH, error)
        for _event, order_type, created_at in expired:
            metrics.order_finished(order_type, "failed", created_at, str(error["code"]))
        if expired:
            self.publisher.publish_many([event_payload(e) for e, _type, _at in expired])
        return len(expired)


def trigger_service() -> TriggerService:
    """The service for the current app context (the beat task), on this process's chain."""
    from flask import current_app

    from order_engine.infra.db import get_session
    from order_engine.services.resources import chain_resources

    settings: Settings = current_app.config["SETTINGS"]
    chain = chain_resources(settings)
    return TriggerService(get_session(), chain.router, chain.chain, app_publisher(), settings)
