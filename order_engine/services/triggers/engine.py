"""The trigger engine: orders wait in PostgreSQL until the market meets them.

Each evaluation (a Celery beat task, about once per slot):

1. Expires the waiting orders whose `expiresAt` has passed (`failed`, ORDER_EXPIRED).
2. Finds the orders that wait for the market to rise to them (limits, snipers, a bracket's
   take-profit, a trailing stop's activation price): a price bound per listed pair, one
   indexed range query per pair (limits.py).
3. Finds the orders that wait for it to fall to them (stops, a bracket's stop-loss, trailing
   stops): per pair and size class, a floor of the quotes and the drop from each shared peak,
   one indexed range query each (stops.py, trailing.py).
4. Confirms each candidate by its type (one exact quote per order, shared by its lists), then
   moves those that trigger to `routing` with that route decision, by one compare-and-set for
   all of them, and sends the ordinary `execute_order` task of each order moved. The executor
   claims a `routing` order that no lease holds, quotes again in its own slot and builds from
   that. Trailing stops that reach their activation price start trailing, and a size class
   whose quote rose above its newest mark gets a new one.

So the work per evaluation grows with the candidates (orders at or near their trigger), not
with the orders that wait. Exactly once: the compare-and-set moves an order once whoever runs
it; an order triggered but not dispatched (a crash in between, Redis emptied) is a `routing`
order with no lease that the reconciler re-dispatches; the worker's claim runs it once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from order_engine.chain.client import Chain
from order_engine.config import Settings
from order_engine.domain.errors import ExecutionError
from order_engine.infra import metrics
from order_engine.infra.db import unit_of_work
from order_engine.live.events import Publisher, app_publisher, event_payload
from order_engine.models import OrderType
from order_engine.repositories.stops import StopRepository
from order_engine.repositories.trigger import Candidate, PairBound, TriggerRepository
from order_engine.routing import Router
from order_engine.services.triggers.brackets import confirm_bracket
from order_engine.services.triggers.limits import confirm_limit, pair_bounds
from order_engine.services.triggers.market import MarketView, Tokens
from order_engine.services.triggers.stops import confirm_stop, floor_of
from order_engine.services.triggers.trailing import (
    Activation,
    ClassPlan,
    confirm_activation,
    confirm_trailing,
    plan_class,
)
from order_engine.tasking import dispatch

log = logging.getLogger(__name__)

# At most this many candidates per pair (or pair and size class) per evaluation are quoted,
# those nearest their trigger first; the rest are looked at in the next evaluation.
CANDIDATES_PER_PAIR = 1_000
EXPIRE_BATCH = 1_000
ClassKey = tuple[str, str, int]


class OrderExpired(ExecutionError):
    code, retryable = "ORDER_EXPIRED", False


@dataclass
class Evaluation:
    pairs: int = 0
    candidates: int = 0
    quoted: int = 0
    triggered: list[uuid.UUID] = field(default_factory=list)
    expired: int = 0
    activated: int = 0
    marked: int = 0  # size classes whose peak got a new mark
    elapsed_ms: float = 0.0


@dataclass
class _Round:
    """What one evaluation found: the triggers to record (by order: one decision each, whichever
    lists found it), the trailing stops to start, the classes' plans."""

    market: MarketView
    tokens: Tokens
    ready: dict[uuid.UUID, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    seen: set[uuid.UUID] = field(default_factory=set)
    activations: list[Activation] = field(default_factory=list)
    plans: dict[ClassKey, ClassPlan] = field(default_factory=dict)


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
        self.stops = StopRepository(session)
        self.router = router
        self.chain = chain
        self.publisher = publisher
        self.settings = settings
        self.send_many = send_many

    def evaluate(self) -> Evaluation:
        """One evaluation: expire, select candidates, confirm, start, mark, trigger."""
        started = time.perf_counter()
        result = Evaluation()
        if not self.triggers.any_waiting():
            # Nothing to expire or trigger: no pool states to read, no candidates to select.
            # Run twice a second, those cost a worker under a market-order load 8 % of its
            # CPU (by profile) while no waiting order existed.
            return result
        result.expired = self._expire()
        since = datetime.now(UTC)  # the instant of this evaluation's pool states
        bounds, tokens = pair_bounds(self.router, self.chain)
        result.pairs = len(bounds)
        found = _Round(MarketView(self.router), tokens)
        with unit_of_work(self.session):  # one statement: atomic alone
            rising = self.triggers.candidates(bounds, CANDIDATES_PER_PAIR)
        falling = self._falling(found)
        result.candidates = len(rising) + len(falling)
        for candidate in [*rising, *falling]:
            self._confirm(candidate, found)
        result.quoted = len(found.seen)
        result.activated = self._activate(since, found.activations)
        result.marked = self._mark(since, found.plans)
        # One compare-and-set for all: committing in batches would let the first batch's
        # executions (on this worker's event loop) hold up the quotes of the rest.
        result.triggered = self.trigger(
            [(order_id, data) for order_id, (_, data) in found.ready.items()],
            {order_id: order_type for order_id, (order_type, _) in found.ready.items()},
        )
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        if result.triggered or result.expired or result.activated:
            log.info(
                "triggers: %d pairs, %d candidates, %d triggered, %d started, %d expired in "
                "%.1f ms",
                result.pairs,
                result.candidates,
                len(result.triggered),
                result.activated,
                result.expired,
                result.elapsed_ms,
            )
        return result

    def pair_bounds(self) -> tuple[list[PairBound], Tokens]:
        """Every listed pair (both directions) with its best-price bound (limits.py)."""
        return pair_bounds(self.router, self.chain)

    def trigger(
        self,
        ready: Sequence[tuple[uuid.UUID, dict[str, Any]]],
        types: dict[uuid.UUID, str] | None = None,
    ) -> list[uuid.UUID]:
        """Move the orders from waiting to `routing` (compare-and-set, one statement), publish
        their events, then send the execution task of each order that moved."""
        if not ready:
            return []
        with unit_of_work(self.session):
            events = self.triggers.trigger(ready)
        self.publisher.publish_many([event_payload(e) for e in events])
        moved = [e.order_id for e in events]
        for event in events:
            order_type = (types or {}).get(event.order_id, "unknown")
            metrics.order_triggered(order_type, event.data.get("leg"))
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

    def _falling(self, found: _Round) -> list[Candidate]:
        """The candidates on the stop index: each size class's floor and its trailing stops'
        drops from their marks, one statement for the classes and one for the candidates."""
        with unit_of_work(self.session):
            classes = self.stops.classes()
        floors, drops = [], []
        for size in classes:
            floor = floor_of(size, found.tokens, found.market)
            if floor is None:
                continue
            floors.append(floor)
            if size.last_start is None and not size.marks:
                continue  # no trailing stop: no class quote, no mark
            plan = plan_class(size, found.tokens, found.market)
            found.plans[(size.token_in, size.token_out, size.size_class)] = plan
            drops.extend(plan.drops)
        if not floors:
            return []
        with unit_of_work(self.session):
            return self.stops.candidates(floors, drops, CANDIDATES_PER_PAIR)

    def _confirm(self, candidate: Candidate, found: _Round) -> None:
        """Decide one candidate by its type, once per order whichever lists found it."""
        if candidate.id in found.seen:
            return
        found.seen.add(candidate.id)
        market, tokens = found.market, found.tokens
        data: dict[str, Any] | None = None
        if candidate.type == OrderType.STOP.value:
            data = confirm_stop(candidate, tokens, market)
        elif candidate.type == OrderType.OCO.value:
            data = confirm_bracket(candidate, tokens, market)
        elif candidate.type != OrderType.TRAILING_STOP.value:
            data = confirm_limit(candidate, tokens, market)
        elif candidate.trail_since is None:
            activation = confirm_activation(candidate, tokens, market)
            if activation is not None:
                found.activations.append(activation)
        else:
            key = (candidate.token_in, candidate.token_out, candidate.size_class or 0)
            plan = found.plans.get(key)
            data = None if plan is None else confirm_trailing(candidate, tokens, market, plan)
        if data is not None:
            found.ready[candidate.id] = (candidate.type, data)

    def _activate(self, since: datetime, activations: list[Activation]) -> int:
        """Start the trailing stops whose activation price was reached (one statement)."""
        if not activations:
            return 0
        with unit_of_work(self.session):
            events = self.stops.activate(since, activations)
        self.publisher.publish_many([event_payload(e) for e in events])
        return len(events)

    def _mark(self, since: datetime, plans: dict[ClassKey, ClassPlan]) -> int:
        """A new mark for each class whose quote rose above its newest one, or whose orders
        started after it (one statement for all; none while no quote rises)."""
        marks = [(*key, plan.mark) for key, plan in plans.items() if plan.mark is not None]
        if marks:
            with unit_of_work(self.session):
                self.stops.mark(since, marks)
            metrics.trailing_marks_written(len(marks))
        return len(marks)

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
