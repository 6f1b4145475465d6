"""What every part of the executor works with (`Context`), and its writes to the order it
holds (`Steps`): each a compare-and-set transition committed at once, then published."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from solders.keypair import Keypair
from sqlalchemy.orm import Session

from order_engine.chain.client import Chain
from order_engine.chain.fees import FeeOracle
from order_engine.config import Settings
from order_engine.domain.status import HAPPY_PATH, OrderStatus
from order_engine.infra.db import unit_of_work
from order_engine.live.events import Publisher, event_payload
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.transitions import (
    Step,
    Transition,
    TransitionCommitter,
    lease_expiry,
)
from order_engine.routing import Router
from order_engine.services.execution.attempt import (
    Attempt,
    Entry,
    LeaseLost,
    NotClaimed,
    observe_pending,
)
from order_engine.services.execution.landing import UnitTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """The executor's resources: the session and repository its claims and reads go through,
    the committer of its transitions, the market, the chain, the wallet that signs, where
    events go, the settings, the clock of the event data's timestamps (a replay on
    virtual time passes its own), and the process's priority fee oracle and compute units table."""

    session: Session
    orders: OrderRepository
    committer: TransitionCommitter
    router: Router
    chain: Chain
    wallet: Keypair
    publisher: Publisher
    settings: Settings
    now: Callable[[], datetime]
    fee_oracle: FeeOracle
    units: UnitTable


class Steps:
    """The executor's transitions of an order it holds (or, for a FRESH attempt, claims with
    its first one). Each is committed on its own at once (`TransitionCommitter`), never inside
    a transaction held across a chain call, and its events are published after the commit."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def advance(
        self,
        attempt: Attempt,
        new: OrderStatus,
        data: dict[str, Any],
        values: dict[str, Any],
        *,
        expected: Iterable[OrderStatus] | None = None,
    ) -> None:
        self.advance_many(attempt, [Step(new, data, values)], expected=expected)

    def advance_many(
        self,
        attempt: Attempt,
        steps: list[Step],
        *,
        expected: Iterable[OrderStatus] | None = None,
    ) -> None:
        """Commit consecutive transitions of an order we hold the lease of in one statement
        (`TransitionCommitter.commit`), then publish their events in one round trip;
        LeaseLost (nothing committed) if the lease is no longer ours. The first step starts
        from the status this attempt moved the order to, or from any of `expected` (a
        failure, from wherever it happened). A FRESH attempt's first step also claims the
        order, which must be fresh (NotClaimed, nothing committed, if it is not)."""
        claiming = attempt.entry is Entry.FRESH
        events = self.ctx.committer.commit(
            Transition.of(
                attempt.order.id,
                tuple(expected) if expected is not None else attempt.status,
                steps,
                lease_owner=attempt.executor,
                claim_lease_s=self.ctx.settings.order_lease_s if claiming else None,
            )
        )
        if events is None and claiming:
            raise NotClaimed(f"order {attempt.order.id} is not fresh")
        if events is None:
            raise LeaseLost(f"order {attempt.order.id}: lost the lease before {steps[0].status}")
        payloads = [event_payload(event) for event in events]
        if claiming:
            observe_pending(attempt.order)
            attempt.entry = Entry.CLAIMED
        previous = attempt.status
        for step in steps:
            # `pending` was timed when the order was claimed.
            if previous is not OrderStatus.PENDING:
                attempt.clock.left(previous)
            previous = step.status
        attempt.status = previous
        self.ctx.publisher.publish_many(payloads)

    def walk_to(
        self,
        attempt: Attempt,
        target: OrderStatus,
        data: dict[str, Any],
        *,
        renew_lease: bool = False,
    ) -> None:
        """Advance along the happy path from where the order is up to `target`; with
        `renew_lease`, the lease is extended by the last step (or on its own if none)."""
        start, end = HAPPY_PATH.index(attempt.status), HAPPY_PATH.index(target)
        steps = HAPPY_PATH[start + 1 : end + 1]
        for status in steps:
            values: dict[str, Any] = {}
            if renew_lease and status is target:
                values["lease_until"] = lease_expiry(self.ctx.settings.order_lease_s)
            self.advance(attempt, status, data, values)
        if renew_lease and not steps:
            self.renew_lease(attempt)

    def renew_lease(self, attempt: Attempt) -> None:
        with unit_of_work(self.ctx.session):
            if not self.ctx.orders.renew_lease(
                attempt.order.id, attempt.executor, self.ctx.settings.order_lease_s
            ):
                raise LeaseLost(f"order {attempt.order.id}: lease lost before sending")
