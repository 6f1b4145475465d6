"""`ExecutionService.execute`: one delivery of an order's execution task, from how it comes to
the order (intake's copy, a claim, a take-over) to the part of the executor that runs it."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from solders.keypair import Keypair
from sqlalchemy.orm import Session

from order_engine.chain.client import Chain
from order_engine.chain.fees import FeeOracle
from order_engine.chain.mints import token_for
from order_engine.config import Settings
from order_engine.domain.errors import ExecutionError, ExecutorLost
from order_engine.domain.status import OrderStatus
from order_engine.infra import logs, metrics
from order_engine.infra.db import unit_of_work
from order_engine.live.events import Publisher, app_publisher
from order_engine.models import Order
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.transitions import TransitionCommitter
from order_engine.routing import Router
from order_engine.services.execution.attempt import (
    Attempt,
    Entry,
    LeaseLost,
    NotClaimed,
    Outcome,
    check_delivery_budget,
    observe_pending,
)
from order_engine.services.execution.fail import Failures
from order_engine.services.execution.landing import UnitTable
from order_engine.services.execution.recover import Recovery
from order_engine.services.execution.run import Runner
from order_engine.services.execution.steps import Context, Steps
from order_engine.services.task_copy import as_claimed

log = logging.getLogger(__name__)


def new_executor_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class ExecutionService:
    """Runs one attempt of an order: `execute` finds how it comes to the order and hands the
    attempt to the part of the executor for its state (`Runner`, `Recovery`, `Failures`)."""

    def __init__(
        self,
        session: Session,
        router: Router,
        chain: Chain,
        wallet: Keypair,
        publisher: Publisher,
        settings: Settings,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        committer: TransitionCommitter | None = None,
        fee_oracle: FeeOracle | None = None,
        units: UnitTable | None = None,
    ) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.router = router
        self.chain = chain
        self.settings = settings
        # Every step commits on its own, at once (on the session's engine unless given).
        ctx = Context(
            session,
            self.orders,
            committer or TransitionCommitter.of_session(session),
            router,
            chain,
            wallet,
            publisher,
            settings,
            now,
            fee_oracle or FeeOracle.configured(chain.recent_prioritization_fees, settings),
            units or UnitTable(),
        )
        steps = Steps(ctx)
        self.runner = Runner(ctx, steps)
        self.recovery = Recovery(ctx, steps, self.runner)
        self.failures = Failures(ctx, steps)

    def execute(
        self, order_id: uuid.UUID, executor: str, copy: dict[str, Any] | None = None
    ) -> Outcome:
        """Run one attempt of the order if it is ours to run; return what happened.

        `copy`: the task's copy of a new market order (`task_copy`). The order is then routed
        and built first and claimed by the statement that records `routing`, if it is still
        fresh; if it is not (claimed elsewhere, cancelled, or an earlier delivery got further),
        or routing it failed before that, it is run the usual way: claimed, then routed."""
        if copy is not None:
            order = as_claimed(order_id, copy)
            outcome = None if order is None else self._execute_fresh(order, executor)
            if outcome is not None:
                return outcome
        attempt = self._claim(order_id, executor)
        if attempt is None:
            return Outcome.SKIPPED
        try:
            if attempt.order.tx_hash:
                # Whatever already reached the chain is settled first: never fail (or send
                # anew for) an order whose transaction may still land.
                settled = self.recovery.settle_outstanding(attempt)
                if settled is not None:
                    return settled
            elif attempt.taken_over:
                check_delivery_budget(attempt, self.settings)
                raise ExecutorLost("the executor stopped before building a transaction")
            check_delivery_budget(attempt, self.settings)
            return self.runner.run(attempt)
        except LeaseLost as lost:
            log.warning("%s; stopping without side effects", lost)
            return Outcome.LEASE_LOST
        except ExecutionError as error:
            return self.failures.fail_attempt(attempt, error)

    def _execute_fresh(self, order: Order, executor: str) -> Outcome | None:
        """Route, build and claim-with-`routing` a fresh order, then go on as usual; None if it
        was not claimed here (nothing was written)."""
        attempt: Attempt | None = None
        try:
            # Its `pending` is timed by the claim (Steps.advance_many): one not claimed here is
            # claimed the usual way, or by someone else, who time it.
            attempt = self._attempt(order, executor, Entry.FRESH)
            return self.runner.run(attempt)
        except NotClaimed:
            log.info("order %s: not fresh; claiming it the usual way", order.id)
            return None
        except LeaseLost as lost:
            log.warning("%s; stopping without side effects", lost)
            return Outcome.LEASE_LOST
        except ExecutionError as error:
            if attempt is None or attempt.entry is Entry.FRESH:
                return None  # the usual way claims it and meets (or records) this again
            return self.failures.fail_attempt(attempt, error)

    def _claim(self, order_id: uuid.UUID, executor: str) -> Attempt | None:
        lease_s = self.settings.order_lease_s
        with unit_of_work(self.session):  # a claim, else a take-over: each atomic alone
            order = self.orders.claim(order_id, executor, lease_s)
            entry = Entry.CLAIMED
            if order is None:
                order = self.orders.take_over(order_id, executor, lease_s)
                entry = Entry.TAKEN_OVER
            if order is None:
                log.info(
                    "order %s: not runnable by %s (claimed, done or unknown)", order_id, executor
                )
                return None
        return self._attempt(order, executor, entry)

    def _attempt(self, order: Order, executor: str, entry: Entry) -> Attempt:
        """An attempt at `order` as its claim (or take-over) returned it, or as intake's copy
        says it is (FRESH)."""
        logs.bind(order_id=order.id, attempt=order.attempts)
        status = OrderStatus(order.status)
        clock = metrics.StatusClock()
        claimed = entry is Entry.CLAIMED
        if status is OrderStatus.ROUTING and claimed and order.triggered_at is not None:
            # Routed by the trigger engine: its time in `routing` runs from the trigger.
            clock.since -= max((datetime.now(UTC) - order.triggered_at).total_seconds(), 0.0)
        elif claimed:
            observe_pending(order)
        # A sniper's token_out is a mint the registry does not list: its decimals are read
        # from the chain (once per process).
        token_in, token_out = (
            token_for(self.chain, order.token_in),
            token_for(self.chain, order.token_out),
        )
        return Attempt(
            order,
            executor,
            token_in,
            token_out,
            token_in.to_atoms(order.amount_in),
            status,
            entry,
            order.tx_last_valid_height,
            clock=clock,
        )


def execution_service() -> ExecutionService:
    """The service for the current app context (a task), on this process's chain resources."""
    from flask import current_app

    from order_engine.infra.db import get_session
    from order_engine.services.resources import chain_resources

    settings: Settings = current_app.config["SETTINGS"]
    chain = chain_resources(settings)
    return ExecutionService(
        get_session(),
        chain.router,
        chain.chain,
        chain.wallet,
        app_publisher(),
        settings,
        fee_oracle=chain.fees,
        units=chain.units,
    )
