"""Data access for orders and their events. Takes a Session; adds and flushes, never commits.

Status changes are compare-and-set: `UPDATE … WHERE status IN (:expected) RETURNING …`. Under
READ COMMITTED a concurrent second UPDATE waits for the first, re-checks the WHERE clause and
matches nothing, so a duplicated or redelivered task cannot move an order twice. The
transition's statement is `repositories.transitions`'; here it joins the caller's unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.orm import Session, aliased

from order_engine.domain.status import IN_FLIGHT, TERMINAL_STATUSES, OrderStatus
from order_engine.infra.db import session_statement
from order_engine.models import DEFAULT_ACCOUNT_ID, Order, OrderEvent
from order_engine.repositories.transitions import Step, Transition


@dataclass(frozen=True)
class OrderPage:
    orders: Sequence[Order]
    next_cursor: tuple[datetime, uuid.UUID] | None


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, order: Order) -> Order:
        self.session.add(order)
        self.session.flush()
        return order

    def get(self, order_id: uuid.UUID) -> Order | None:
        return self.session.get(Order, order_id, populate_existing=True)

    def get_by_idempotency_key(
        self, key: str, account_id: uuid.UUID = DEFAULT_ACCOUNT_ID
    ) -> Order | None:
        return self.session.scalars(
            select(Order).where(Order.account_id == account_id, Order.idempotency_key == key)
        ).first()

    def get_owned(self, order_id: uuid.UUID, account_id: uuid.UUID | None) -> Order | None:
        """The order if `account_id` owns it (None: any account's, for admin keys)."""
        order = self.get(order_id)
        if order is None or (account_id is not None and order.account_id != account_id):
            return None
        return order

    def count_unfinished_by_status(self) -> dict[str, int]:
        """Every account's unfinished orders by status (the dashboard): the work grows with the
        orders in flight, not with the history (a partial index on unfinished orders)."""
        rows = self.session.execute(
            select(Order.status, func.count())
            .where(Order.status.not_in([s.value for s in TERMINAL_STATUSES]))
            .group_by(Order.status)
        ).all()
        return {status: count for status, count in rows}

    def lock_account(self, account_id: uuid.UUID) -> None:
        """Serialise one account's intake until the transaction ends (a transaction-level
        advisory lock), so that concurrent submissions cannot all pass its in-flight cap."""
        self.session.execute(
            select(func.pg_advisory_xact_lock(func.hashtextextended(str(account_id), 0)))
        )

    def events(self, order_id: uuid.UUID, after_seq: int = 0) -> Sequence[OrderEvent]:
        query = (
            select(OrderEvent)
            .where(OrderEvent.order_id == order_id, OrderEvent.seq > after_seq)
            .order_by(OrderEvent.seq)
        )
        return self.session.scalars(query).all()

    def append_first_event(self, order: Order, data: dict[str, Any]) -> OrderEvent:
        """The `pending` event of a new order (seq 1), written with the order itself."""
        order.last_seq = 1
        event = OrderEvent(
            order_id=order.id,
            seq=1,
            status=order.status,
            attempt=order.attempts,
            data=data,
            at=datetime.now(UTC),
        )
        self.session.add(event)
        self.session.flush()
        return event

    def transition(
        self,
        order_id: uuid.UUID,
        expected: OrderStatus | Iterable[OrderStatus],
        new: OrderStatus,
        *,
        event_data: dict[str, Any],
        lease_owner: str | None = None,
        require_no_transaction: bool = False,
        values: dict[str, Any] | None = None,
        require_waiting: bool | None = None,
        claim_lease_s: int | None = None,
    ) -> OrderEvent | None:
        """Move an order from one of `expected` to `new` and append its event, as part of the
        caller's unit of work (`apply`).

        Returns the event, or None when the order was not in an expected status (or its lease
        belongs to someone else): the caller lost the race and must change nothing else.
        `values` sets other columns in the same statement; the conditions are `Transition`'s.
        """
        step = Step(new, event_data, values or {})
        events = self.apply(
            Transition.of(
                order_id,
                expected,
                [step],
                lease_owner=lease_owner,
                require_no_transaction=require_no_transaction,
                require_waiting=require_waiting,
                claim_lease_s=claim_lease_s,
            )
        )
        return None if events is None else events[0]

    def apply(self, transition: Transition) -> list[OrderEvent] | None:
        """Run `transition`'s statement on the session's connection: part of the caller's unit
        of work, which commits it (this never does; `TransitionCommitter.commit` is the same
        statement committed on its own). Its events in seq order, or None (nothing written)
        when the order was not in an expected status or its lease is another's."""
        return transition.events(session_statement(self.session, transition.sql, transition.params))

    def claim(self, order_id: uuid.UUID, owner: str, lease_s: int) -> Order | None:
        """Take the execution lease of an order waiting to run, counting a new attempt.

        Returns the order (as the claim left it, from the same statement's RETURNING: no read
        back), or None if it is not waiting or another executor holds its lease.
        """
        row = (
            self.session.connection()
            .exec_driver_sql(_CLAIM_SQL, {"id": order_id, "owner": owner, "lease_s": lease_s})
            .mappings()
            .first()
        )
        return None if row is None else Order(**row)

    def take_over(self, order_id: uuid.UUID, owner: str, lease_s: int) -> Order | None:
        """Take the lease of an order stuck mid-flight whose executor's lease has expired.

        The attempt is not counted again: the new executor finishes (or fails) that attempt.
        """
        in_flight = [s.value for s in IN_FLIGHT if s is not OrderStatus.PENDING]
        return self._lease(
            order_id,
            owner,
            lease_s,
            where=[Order.status.in_(in_flight), Order.lease_until < func.now()],
            counters={},
        )

    def _lease(
        self,
        order_id: uuid.UUID,
        owner: str,
        lease_s: int,
        where: list[Any],
        counters: dict[str, Any],
    ) -> Order | None:
        statement = (
            update(Order)
            .where(Order.id == order_id, *where)
            .values(
                lease_owner=owner,
                lease_until=_lease_until(lease_s),
                deliveries=Order.deliveries + 1,
                updated_at=func.now(),
                **counters,
            )
            .returning(Order.id)
        )
        if self.session.execute(statement).first() is None:
            return None
        return self.get(order_id)

    def claim_stale(
        self, stale_s: int, limit: int, queued_behind: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Orders the queue may have lost, locked with SKIP LOCKED and marked as re-dispatched.

        Two kinds: waiting to run (`pending` with no live lease, or `routing` by the trigger
        engine and never claimed) with no dispatch or planned retry in the last `stale_s`
        seconds; and mid-flight orders whose executor's lease has expired.
        Concurrent reconcilers skip each other's rows, so no order is taken twice.

        `queued_behind`: the order of the oldest message still in the task queue. A waiting
        order dispatched after it (QUEUED_MARGIN_S aside) is still queued behind it, however
        long ago that was: under a backlog, orders wait longer than `stale_s` without being
        lost, and re-dispatching them only doubled the queue (6,800 refused duplicates in a
        10-minute overload).
        """
        cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_s)
        dispatched = func.coalesce(Order.dispatched_at, Order.created_at)
        quiet = and_(
            dispatched < cutoff,
            or_(Order.next_attempt_at.is_(None), Order.next_attempt_at < cutoff),
        )
        queued_since = None
        if queued_behind is not None:
            head = aliased(Order)
            queued_since = (
                select(func.coalesce(head.dispatched_at, head.created_at))
                .where(head.id == queued_behind)
                .scalar_subquery()
            ) - func.make_interval(0, 0, 0, 0, 0, 0, QUEUED_MARGIN_S)
            # The mid-flight kind is not affected: its executor is gone, whatever is queued.
        waiting = or_(
            and_(Order.status == OrderStatus.PENDING.value, _lease_free()),
            _routed_unclaimed(),
        )
        if queued_behind is not None:
            # No such order (the message outlived its row): no backlog to go by.
            waiting = and_(waiting, dispatched < func.coalesce(queued_since, func.now()))
        stuck = and_(
            Order.status.in_([s.value for s in IN_FLIGHT if s is not OrderStatus.PENDING]),
            Order.lease_until < func.now(),
        )
        # A limit or sniper order that has not triggered is the trigger engine's, not ours.
        ids = self.session.scalars(
            select(Order.id)
            .where(or_(waiting, stuck), quiet, not_(Order.waiting))
            .order_by(Order.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if ids:
            self.session.execute(
                update(Order).where(Order.id.in_(ids)).values(dispatched_at=func.now())
            )
        return list(ids)

    def renew_lease(self, order_id: uuid.UUID, owner: str, lease_s: int) -> bool:
        """Extend our lease; False if it is no longer ours."""
        statement = (
            update(Order)
            .where(Order.id == order_id, Order.lease_owner == owner)
            .values(lease_until=_lease_until(lease_s))
            .returning(Order.id)
        )
        return self.session.execute(statement).first() is not None

    def mark_unlandable(self, order_id: uuid.UUID, owner: str, signature: str) -> bool:
        """Record that the order's transaction `signature` can never land (its bundle failed):
        its last valid height becomes 0, so nothing re-broadcasts it and a new version may be
        built at once. False if the lease is no longer ours (or the transaction another)."""
        statement = (
            update(Order)
            .where(Order.id == order_id, Order.lease_owner == owner, Order.tx_hash == signature)
            .values(tx_last_valid_height=0)
            .returning(Order.id)
        )
        return self.session.execute(statement).first() is not None

    def page(
        self,
        *,
        limit: int,
        status: Sequence[str] = (),
        order_type: Sequence[str] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        before: tuple[datetime, uuid.UUID] | None = None,
        account_id: uuid.UUID | None = None,
    ) -> OrderPage:
        """Newest first, keyset-paginated on (created_at, id) so pages never skip or repeat."""
        query = select(Order)
        if account_id is not None:
            query = query.where(Order.account_id == account_id)
        if status:
            query = query.where(Order.status.in_(status))
        if order_type:
            query = query.where(Order.type.in_(order_type))
        if created_from is not None:
            query = query.where(Order.created_at >= created_from)
        if created_to is not None:
            query = query.where(Order.created_at < created_to)
        if before is not None:
            created_at, order_id = before
            query = query.where(
                or_(
                    Order.created_at < created_at,
                    and_(Order.created_at == created_at, Order.id < order_id),
                )
            )
        query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
        rows = self.session.scalars(query).all()
        has_more = len(rows) > limit
        rows = rows[:limit]
        cursor = (rows[-1].created_at, rows[-1].id) if has_more and rows else None
        return OrderPage(rows, cursor)


# Sends from several API processes reach the queue in about the order of their dispatch
# times, not exactly: an order dispatched this much before the queue's oldest may still be in it.
QUEUED_MARGIN_S = 5


def _lease_free() -> ColumnElement[bool]:
    return or_(Order.lease_until.is_(None), Order.lease_until < func.now())


def _routed_unclaimed() -> ColumnElement[bool]:
    """A triggered order the trigger engine routed and no executor has claimed yet."""
    return and_(Order.status == OrderStatus.ROUTING.value, Order.lease_owner.is_(None))


def _lease_until(lease_s: int) -> Any:
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)


# The claim: one statement takes the lease, counts the attempt and returns the whole row.
# Two kinds of order are waiting to run: a `pending` one (new, or a retry) and a `routing`
# one that no executor has held yet: a limit or sniper order the trigger engine routed (its
# compare-and-set counted the attempt). Every other `routing` order has a lease owner.
_CLAIM_SQL = """
UPDATE orders
   SET lease_owner = %(owner)s,
       lease_until = now() + make_interval(secs => %(lease_s)s),
       deliveries = deliveries + 1,
       attempts = attempts + CASE WHEN status = 'pending' THEN 1 ELSE 0 END,
       next_attempt_at = NULL,
       updated_at = now()
 WHERE id = %(id)s
   AND ((status = 'pending' AND NOT waiting AND (lease_until IS NULL OR lease_until < now()))
        OR (status = 'routing' AND lease_owner IS NULL))
RETURNING *
"""
