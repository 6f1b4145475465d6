"""TWAP orders: a parent that runs `slices` child market orders, one every `intervalS` seconds.

A parent is accepted like a limit order that waits (`pending`, `waiting`, counted against the
account's waiting orders); the scheduler (`TwapService.evaluate`, run after the trigger
evaluation by the same beat message, `orders.evaluate_triggers`, every TRIGGER_INTERVAL_MS, and
for a new parent at once by `orders.schedule_slices`) then moves it a step at a time. Each step
is one transaction: a compare-and-set of the parent on what the scheduler saw, the parent's
`pending` event saying what the step did, and the step's children (each an ordinary market
order with its own `pending` event), unique per (parent, slice). After the commit the
children's execution tasks are sent with a countdown to their due time, so that a slice starts
on time although beat runs only twice a slot: a step looks `lookahead` (two trigger
intervals) ahead. A slice whose task is lost is a `pending` order like any other: the
reconciler sends it again, and the claim runs it once.

With a `limitPrice`, each slice is quoted for its own amount when it is due (by the first
run at or after its time, not ahead of it): one that the market does not meet waits for the
next interval (the parent's event says so), and one still held at the last slice is reported
with what is left. A child carries the limit, so its swap never pays less, whatever the market
does between that quote and the executor's.

A step also reports the children that finished (what filled, the average price, what
remains); once no slice is left to start and every child has finished, the parent ends:
`confirmed` if every slice filled, else `failed` (TWAP_PARTIALLY_FILLED, TWAP_NOT_FILLED).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from order_engine.config import Settings
from order_engine.domain import twap
from order_engine.domain.amounts import required_out_atoms
from order_engine.domain.errors import ExecutionError
from order_engine.domain.status import OrderStatus
from order_engine.domain.time import format_timestamp
from order_engine.domain.tokens import Token, decimal_text, resolve
from order_engine.infra import metrics
from order_engine.infra.db import unit_of_work
from order_engine.live.events import EventPublisher, event_payload
from order_engine.models import Order
from order_engine.repositories.twap import NewChild, Parent, ParentStep, TwapRepository
from order_engine.routing import Router
from order_engine.services.task_copy import task_copy
from order_engine.tasking import dispatch

log = logging.getLogger(__name__)

# Parents moved per evaluation at most (oldest first); the rest in the next one.
PARENTS_PER_EVALUATION = 500


# -- intake ---------------------------------------------------------------------------------


def parent_fields(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A TWAP parent's columns and what its first event says of its schedule."""
    token_in: Token = data["tokenIn"]
    slices, interval_s = data["slices"], data["intervalS"]
    amounts = twap.slice_atoms(token_in.to_atoms(data["amount"]), slices)
    schedule: dict[str, Any] = {
        "slices": slices,
        "intervalS": interval_s,
        "sliceAmount": _plain(token_in.from_atoms(amounts[0])),
        "lastSliceInS": (slices - 1) * interval_s,
    }
    if data.get("limitPrice") is not None:
        schedule["limitPrice"] = _plain(data["limitPrice"])
    values = {
        "waiting": True,
        "slices": slices,
        "interval_s": interval_s,
        "limit_price": data.get("limitPrice"),
    }
    return values, {"twap": schedule}


# -- the scheduler --------------------------------------------------------------------------


@dataclass
class SchedulerRun:
    """What one evaluation did."""

    parents: int = 0
    started: list[uuid.UUID] = field(default_factory=list)
    held_back: int = 0
    deferred: int = 0
    ended: int = 0
    elapsed_ms: float = 0.0


@dataclass
class _Plan:
    """One parent's step, before the cap is applied: the children to start, the slices held
    back by the limit, and how far the schedule moves."""

    parent: Parent
    token_in: Token
    token_out: Token
    children: list[twap.ChildFill]
    start: list[NewChild] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    next_slice: int = 0
    deferred: int = 0


class TwapService:
    def __init__(
        self,
        session: Session,
        router: Router | None,
        publisher: EventPublisher,
        settings: Settings,
        send: Callable[..., None] = dispatch.enqueue_execute_order,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session = session
        self.twaps = TwapRepository(session)
        self.router = router
        self.publisher = publisher
        self.settings = settings
        self.send = send
        self.clock = clock
        # Beat sends an evaluation every TRIGGER_INTERVAL_MS; one may come late (a busy
        # worker), so a step looks two intervals ahead and the countdown does the rest.
        self.lookahead = timedelta(milliseconds=2 * settings.trigger_interval_ms)

    def evaluate(self, only: uuid.UUID | None = None) -> SchedulerRun:
        """One evaluation: every running parent with something to do takes its step (`only`:
        that parent alone, as intake asks for a new one)."""
        started = time.perf_counter()
        run = SchedulerRun()
        with unit_of_work(self.session):  # one indexed look: with no parent, the whole run
            if not self.twaps.any_running():
                return run
        now = self.clock()
        with self.session.begin():
            actionable = self.twaps.actionable(
                now + self.lookahead,
                self.settings.max_orders_in_flight,
                PARENTS_PER_EVALUATION,
                only,
            )
        for parent, children in actionable:
            run.parents += 1
            self._advance(parent, children, now, run)
        run.elapsed_ms = (time.perf_counter() - started) * 1000
        if run.started or run.ended or run.held_back:
            log.info(
                "twap: %d parents, %d slices started, %d held back, %d deferred, %d ended in "
                "%.1f ms",
                run.parents,
                len(run.started),
                run.held_back,
                run.deferred,
                run.ended,
                run.elapsed_ms,
            )
        return run

    def _advance(
        self, parent: Parent, children: list[twap.ChildFill], now: datetime, run: SchedulerRun
    ) -> None:
        plan = self._plan(parent, children, now)
        with self.session.begin():
            self._fit_in_flight_cap(plan)
            run.deferred += plan.deferred
            step = _step(plan)
            if step is None:
                return
            at = self.clock()
            event = self.twaps.step(step, at)
            if event is None:
                log.info(
                    "twap %s moved by someone else; its next evaluation looks again", parent.id
                )
                return
            expires = twap.ends_at(parent.created_at, parent.slices, parent.interval_s)
            created = set(self.twaps.add_children(parent, plan.start, expires, at))
        started = [child for child in plan.start if child.id in created]
        self._publish(parent, event, started, at)
        self._send(parent, started, at)
        run.started += [child.id for child in started]
        run.held_back += len(plan.held)
        metrics.twap_slices(len(started), len(plan.held), 0)
        if step.status != OrderStatus.PENDING.value:
            run.ended += 1
            code = (step.error or {}).get("code")
            metrics.order_finished("twap", step.status, parent.created_at, code)

    def _plan(self, parent: Parent, children: list[twap.ChildFill], now: datetime) -> _Plan:
        """Which slices start now: those due by the lookahead (with a limit: due now) that
        have no child yet, each quoted against the limit if there is one."""
        token_in, token_out = resolve(parent.token_in), resolve(parent.token_out)
        plan = _Plan(parent, token_in, token_out, children, next_slice=parent.next_slice)
        # A slice checked against a limit is quoted when it is due, not ahead of it: the
        # quote, not a countdown, decides whether it starts.
        horizon = now if parent.limit_price is not None else now + self.lookahead
        due = twap.due_through(parent.created_at, horizon, parent.interval_s, parent.slices)
        if due < parent.next_slice:
            return plan  # nothing due: a step only to report children
        amounts = twap.slice_atoms(token_in.to_atoms(parent.amount_in), parent.slices)
        exists = {child.slice_index for child in children}
        first_due = twap.due_at(parent.created_at, parent.next_slice, parent.interval_s)
        for index in (k for k in range(due + 1) if k not in exists):
            # A slice held back earlier waits for this step's first interval; the others for
            # their own.
            own = twap.due_at(parent.created_at, index, parent.interval_s)
            at = max(own, first_due)
            held = self._held_back(parent, token_in, token_out, amounts[index])
            if held is not None:
                plan.held.append({"sliceIndex": index, **held})
                continue
            plan.start.append(_child(parent, index, token_in, amounts[index], at))
        plan.next_slice = due + 1
        return plan

    def _held_back(
        self, parent: Parent, token_in: Token, token_out: Token, atoms: int
    ) -> dict[str, Any] | None:
        """Why a slice waits for the next interval (its quote is below the limit, or there is
        no quote), or None when it may start."""
        if parent.limit_price is None:
            return None
        amount = token_in.from_atoms(atoms)
        required = required_out_atoms(amount, parent.limit_price, None, token_out.decimals)
        held = {"amount": _plain(amount)}
        held["requiredAmountOut"] = decimal_text(token_out.from_atoms(required))
        if self.router is None:
            return held | {"reason": "no quote"}
        try:
            quoted = self.router.route(token_in, token_out, atoms).amount_out
        except (ExecutionError, ValueError) as exc:
            log.info("twap %s: no quote for a slice (%s); it waits", parent.id, exc)
            return held | {"reason": "no quote"}
        if quoted >= required:
            return None
        return held | {"quotedAmountOut": decimal_text(token_out.from_atoms(quoted))}

    def _fit_in_flight_cap(self, plan: _Plan) -> None:
        """Children count against the account's orders in flight: those beyond its cap are
        left for a later evaluation, and the schedule does not move past them."""
        cap = plan.parent.in_flight_cap
        if not cap or not plan.start:
            return
        room = max(cap - self.twaps.in_flight(plan.parent.account_id, cap), 0)
        if room >= len(plan.start):
            return
        plan.deferred = len(plan.start) - room
        metrics.twap_slices(0, 0, plan.deferred)
        plan.start = plan.start[:room]
        plan.next_slice = plan.parent.next_slice
        # Held slices are looked at again with the deferred ones, not reported twice.
        plan.held = []

    def _publish(
        self, parent: Parent, event: Any, started: Sequence[NewChild], at: datetime
    ) -> None:
        """The parent's event and each new child's first, once committed."""
        firsts = [
            {
                "orderId": str(child.id),
                "seq": 1,
                "status": OrderStatus.PENDING.value,
                "at": format_timestamp(at),
                "attempt": 0,
                "data": child.data,
            }
            for child in started
        ]
        if firsts:
            self.publisher.publish_many(firsts, parent.account_id)
        self.publisher.publish(event_payload(event))

    def _send(self, parent: Parent, started: Sequence[NewChild], at: datetime) -> None:
        """Each child's execution task, for when it is due (a slice already due goes now).
        A child without a limit carries intake's kind of copy (services/task_copy.py), so the
        executor routes it and claims it in one statement, one round trip sooner at its start;
        a limit is not in the copy, so a child with one is read from its row."""
        for child in started:
            # From the clock now, not the evaluation's start: the steps before this one took
            # their time, and a countdown from then would start the slice that much late.
            countdown = (child.due - self.clock()).total_seconds()
            copy = None
            if parent.limit_price is None:
                copy = task_copy(_as_order(parent, child, at))
            try:
                self.send(child.id, countdown_s=countdown if countdown > 0.005 else None, copy=copy)
            except Exception as exc:  # noqa: BLE001 - broker down: the reconciler sends it
                log.warning("twap slice %s not queued (%s); the reconciler will", child.id, exc)


def _as_order(parent: Parent, child: NewChild, at: datetime) -> Order:
    """A child as its row was written (what its task's copy is made from)."""
    return Order(
        id=child.id,
        account_id=parent.account_id,
        type="market",
        token_in=parent.token_in,
        token_out=parent.token_out,
        amount_in=child.amount_in,
        slippage_bps=parent.slippage_bps,
        client_order_id=None,
        created_at=at,
        waiting=False,
        priority_fee_micro_lamports=parent.priority_fee_micro_lamports,
        max_fee_lamports=parent.max_fee_lamports,
        mev_protection=parent.mev_protection,
    )


def _child(parent: Parent, index: int, token_in: Token, atoms: int, due: datetime) -> NewChild:
    amount = token_in.from_atoms(atoms)
    data: dict[str, Any] = {
        "type": "market",
        "tokenIn": parent.token_in,
        "tokenOut": parent.token_out,
        "amount": _plain(amount),
        "slippageBps": parent.slippage_bps,
        "clientOrderId": None,
        "parentId": str(parent.id),
        "sliceIndex": index,
        "dueAt": format_timestamp(due),
    }
    if parent.limit_price is not None:
        data["limitPrice"] = _plain(parent.limit_price)
    return NewChild(uuid.uuid4(), index, amount, due, data)


def _step(plan: _Plan) -> ParentStep | None:
    """The parent's step for `plan`: its event's data and new columns, its end once nothing is
    left to start and every child has finished; None when there is nothing to say."""
    parent = plan.parent
    progress = twap.Progress.of(parent.amount_in, parent.slices, plan.children)
    moved = plan.next_slice != parent.next_slice or bool(plan.start or plan.held)
    ends = plan.next_slice >= parent.slices and not plan.start
    ends = ends and progress.finished == progress.started
    if not (moved or ends or progress.finished != parent.slices_finished):
        return None
    report = _report(plan, progress)
    status, error = OrderStatus.PENDING, None
    if ends:
        # Slices never started are those the limit held back to the last.
        status, error = progress.outcome(held_back=parent.slices - progress.started)
        report |= _final(progress, error)
    return ParentStep(
        parent=parent,
        status=status.value,
        next_slice=plan.next_slice,
        slices_finished=progress.finished,
        filled_in=progress.filled_in,
        filled_out=progress.filled_out,
        price=progress.average_price,
        data=report,
        error=None if error is None else error.as_dict(),
    )


def _report(plan: _Plan, progress: twap.Progress) -> dict[str, Any]:
    """What a parent's event says: the slices started and held back by this step, when the
    next is due, and the fills so far."""
    parent = plan.parent
    summary: dict[str, Any] = {
        "slices": parent.slices,
        "slicesStarted": progress.started + len(plan.start),
        "slicesFinished": progress.finished,
        "slicesFilled": progress.filled,
        "filled": {
            "amountIn": _plain(progress.filled_in),
            "amountOut": _plain(progress.filled_out),
        },
        "averagePrice": None if progress.average_price is None else _plain(progress.average_price),
        "remaining": _plain(progress.remaining),
        "nextSliceAt": None,
    }
    if plan.next_slice < parent.slices:
        next_at = twap.due_at(parent.created_at, plan.next_slice, parent.interval_s)
        summary["nextSliceAt"] = format_timestamp(next_at)
    if plan.start:
        summary["started"] = [
            {
                "sliceIndex": child.slice_index,
                "orderId": str(child.id),
                "amount": _plain(child.amount_in),
                "dueAt": format_timestamp(child.due),
            }
            for child in plan.start
        ]
    if plan.held:
        summary["heldBack"] = plan.held
    return {"twap": summary}


def _final(progress: twap.Progress, error: ExecutionError | None) -> dict[str, Any]:
    """The end's own data: what filled in all, and the error when not everything did."""
    final: dict[str, Any] = {
        "amountIn": _plain(progress.filled_in),
        "amountOut": _plain(progress.filled_out),
        "averagePrice": None if progress.average_price is None else _plain(progress.average_price),
    }
    if error is not None:
        final["error"] = error.as_dict()
    return final


def _plain(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f") if value else "0"


def twap_service() -> TwapService:
    """The service for the current app context (the beat task), on this process's chain."""
    from flask import current_app

    from order_engine.infra.db import get_session
    from order_engine.live.events import app_publisher
    from order_engine.services.resources import chain_resources

    settings: Settings = current_app.config["SETTINGS"]
    return TwapService(get_session(), chain_resources(settings).router, app_publisher(), settings)
