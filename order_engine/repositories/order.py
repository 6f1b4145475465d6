"""Data access for orders and their events. Takes a Session; adds and flushes, never commits.

Status changes are compare-and-set: `UPDATE … WHERE status IN (:expected) RETURNING …`. Under
READ COMMITTED a concurrent second UPDATE waits for the first, re-checks the WHERE clause and
matches nothing, so a duplicated or redelivered task cannot move an order twice.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import ColumnElement, Engine, Table, and_, func, not_, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased

from order_engine.infra.batching import MAX_BATCH, GroupCommit
from order_engine.infra.db import (
    run_on_engine,
    run_statement,
    standalone_engine,
    together_or_each_alone,
)
from order_engine.infra.process import PROCESS
from order_engine.models import (
    DEFAULT_ACCOUNT_ID,
    IN_FLIGHT,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Order,
    OrderEvent,
    OrderStatus,
)


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
        """Move an order from one of `expected` to `new` and append its event.

        Returns the event, or None when the order was not in an expected status (or its lease
        belongs to someone else): the caller lost the race and must change nothing else.
        `values` sets other columns in the same statement; a `LeaseExpiry` value means "that
        many seconds from now" on the database's clock. `require_waiting` (when not None)
        also requires the order's `waiting` flag to be that value.

        With `claim_lease_s`, the transition is also the claim of a fresh order (`_FRESH`:
        never claimed, never built for, runnable): it takes the lease for `lease_owner`, which
        need not hold it yet, and counts the first attempt and delivery.
        """
        events = self.transitions(
            order_id,
            expected,
            [Step(new, event_data, values or {})],
            lease_owner=lease_owner,
            require_no_transaction=require_no_transaction,
            require_waiting=require_waiting,
            claim_lease_s=claim_lease_s,
        )
        return None if events is None else events[0]

    def transitions(
        self,
        order_id: uuid.UUID,
        expected: OrderStatus | Iterable[OrderStatus],
        steps: Sequence[Step],
        *,
        lease_owner: str | None = None,
        require_no_transaction: bool = False,
        require_waiting: bool | None = None,
        claim_lease_s: int | None = None,
    ) -> list[OrderEvent] | None:
        """`transition` through consecutive statuses in one statement: the order moves from
        one of `expected` through each step's status to the last one's, with one event per
        step (consecutive seqs, one timestamp), and the steps' `values` set together (a later
        step's value for a column wins). The conditions are checked once, against the row as
        it was: what two transitions in one transaction would do, in one round trip and
        without BEGIN and COMMIT of its own. The events in seq order, or None (nothing
        written) when the order was not in an expected status or its lease is another's.
        Called outside a unit of work, the statement is one (`db.run_statement`)."""
        if not steps:
            raise ValueError("no step to take")
        expected_set = [expected] if isinstance(expected, OrderStatus) else list(expected)
        illegal = [s for s in expected_set if steps[0].status not in TRANSITIONS[s]]
        if illegal:
            raise ValueError(f"no transition from {', '.join(illegal)} to {steps[0].status}")
        for before, after in zip(steps, steps[1:], strict=False):
            if after.status not in TRANSITIONS[before.status]:
                raise ValueError(f"no transition from {before.status} to {after.status}")
        values: dict[str, Any] = {}
        for step in steps:
            values.update(step.values)
        plain = tuple(sorted(k for k, v in values.items() if not isinstance(v, LeaseExpiry)))
        leases = tuple(sorted(k for k, v in values.items() if isinstance(v, LeaseExpiry)))
        shape = _Shape(
            tuple(sorted(s.value for s in expected_set)),
            plain,
            leases,
            lease_owner is not None and claim_lease_s is None,
            require_no_transaction,
            require_waiting,
            claim_lease_s is not None,
            tuple(step.status.value for step in steps),
        )
        at = datetime.now(UTC)
        row: dict[str, Any] = {
            "id": order_id,
            "owner": lease_owner,
            "data": Jsonb(steps[-1].event_data),
            "at": at,
            "claim_lease_s": claim_lease_s,
        }
        for index, step in enumerate(steps[:-1]):
            row[f"data_{index}"] = Jsonb(step.event_data)
        for name, value in values.items():
            if isinstance(value, LeaseExpiry):
                row[f"v_{name}"] = value.seconds
            else:
                row[f"v_{name}"] = Jsonb(value) if isinstance(value, dict | list) else value
        engine = standalone_engine(self.session)
        if engine is None:  # part of the caller's transaction
            rows = run_statement(self.session, _transition_sql(shape), shape.shared() | row)
        else:  # a unit of work by itself, batched with other orders' of the same shape
            rows = _transition_batches(engine).submit(shape, row)
        rows = sorted(rows)  # RETURNING has no order
        if not rows:
            return None
        return [
            OrderEvent(
                order_id=order_id,
                seq=seq,
                status=step.status.value,
                attempt=attempt,
                data=step.event_data,
                at=at,
            )
            for (seq, attempt), step in zip(rows, steps, strict=True)
        ]

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


@dataclass(frozen=True)
class Step:
    """One status change of `OrderRepository.transitions`: the status moved to, its event's
    data, and other columns it sets."""

    status: OrderStatus
    event_data: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaseExpiry:
    """A column value meaning "`seconds` from now" on the database's clock: every lease is
    compared with `now()` there, so no host's clock skew can make two executors hold one."""

    seconds: int


def lease_expiry(lease_s: int) -> LeaseExpiry:
    return LeaseExpiry(lease_s)


def _lease_until(lease_s: int) -> Any:
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)


_ORDER_COLUMNS = frozenset(cast(Table, Order.__table__).columns.keys())
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


# A transition that claims (the executor's first one for a fresh market order, which it routed
# and built from the task's copy of the order before touching the row): the claim's columns…
_CLAIM_COUNTERS = {
    "deliveries": "deliveries + 1",
    "attempts": "attempts + 1",
    "next_attempt_at": "NULL",
}
# …and "fresh": no attempt or delivery counted yet, so no transaction was ever built for it
# and its row still holds what the task's copy says; runnable; no live lease.
_FRESH = (
    "attempts = 0 AND deliveries = 0 AND tx_hash IS NULL AND NOT waiting"
    " AND (lease_until IS NULL OR lease_until < now())"
)


@dataclass(frozen=True)
class _Shape:
    """What makes two transitions one statement's text: those of one shape, from different
    orders, can run as one batched statement."""

    expected: tuple[str, ...]
    columns: tuple[str, ...]
    leases: tuple[str, ...]
    by_owner: bool
    no_transaction: bool
    waiting: bool | None
    claim: bool
    statuses: tuple[str, ...]  # one per step, the last one the order's new status

    def shared(self) -> dict[str, Any]:
        """The parameters every order of the shape has in common: the steps' statuses."""
        params = {f"status_{index}": status for index, status in enumerate(self.statuses[:-1])}
        params["new"] = self.statuses[-1]
        return params

    def row_names(self) -> list[str]:
        """The parameters of one order, with the SQL type of each (batched: arrays of it)."""
        steps = len(self.statuses)
        return (
            ["id", "owner", "data", "at", "claim_lease_s"]
            + [f"data_{index}" for index in range(steps - 1)]
            + [f"v_{name}" for name in self.columns + self.leases]
        )

    def row_type(self, name: str) -> str:
        if name.startswith("v_"):
            column = name[2:]
            return "integer" if column in self.leases else _COLUMN_TYPES[column]
        return _ROW_TYPES.get(name, "jsonb")


_COLUMN_TYPES = {
    column.name: column.type.compile(dialect=postgresql.dialect())
    for column in cast(Table, Order.__table__).columns
}
_ROW_TYPES = {
    "id": "uuid",
    "owner": "text",
    "at": "timestamptz",
    "claim_lease_s": "integer",
}


def _one_type(values: list[Any]) -> list[Any]:
    """An array's values, of one Python type as psycopg needs: whole numbers given for a
    numeric column beside decimals become decimals."""
    kinds = {type(value) for value in values if value is not None}
    if len(kinds) > 1 and kinds <= {int, Decimal}:
        return [value if value is None else Decimal(value) for value in values]
    return values


def _transition_batches(engine: Engine) -> GroupCommit[dict[str, Any], list[tuple[Any, ...]]]:
    """This process's batcher of standalone transitions on `engine`."""
    return PROCESS.get(
        "transition_batches",
        id(engine),
        lambda: GroupCommit(
            "transitions", functools.partial(_run_transitions, engine), max_batch=MAX_BATCH
        ),
    )


def _run_transitions(
    engine: Engine, shape: Hashable, rows: Sequence[dict[str, Any]]
) -> list[list[tuple[Any, ...]] | BaseException]:
    """Run same-shape transitions of different orders: alone, one statement; together, one
    statement for all (one round trip and one commit), each order's compare-and-set checked
    on its own row as before. If that statement fails on one order's data (it never should:
    a constraint), each runs alone again, so that only that order hears of it; a failure of
    the connection goes to every order of the batch, none of whose rows it changed."""
    assert isinstance(shape, _Shape)

    def alone(row: dict[str, Any]) -> list[tuple[Any, ...]]:
        return run_on_engine(engine, _transition_sql(shape), shape.shared() | row)

    def together() -> list[list[tuple[Any, ...]]]:
        params = shape.shared()
        params["b_i"] = list(range(len(rows)))
        for name in shape.row_names():
            params[f"b_{name}"] = _one_type([row[name] for row in rows])
        by_row: list[list[tuple[Any, ...]]] = [[] for _ in rows]
        for index, seq, attempt in run_on_engine(
            engine, _transition_sql(shape, batched=True), params
        ):
            by_row[index].append((seq, attempt))
        return by_row

    return together_or_each_alone(rows, together, alone)


@functools.cache
def _transition_sql(shape: _Shape, batched: bool = False) -> str:
    """The compare-and-set UPDATE feeding the event INSERT through a CTE, written once per
    shape: one round trip, and no SQL built per call on the hot path. Under READ COMMITTED a
    concurrent second UPDATE waits, re-checks the WHERE clause and matches nothing. The
    expected statuses are written into the SQL (they are the state machine's own names): as a
    list parameter, psycopg's array dumping cost 2.5 % of the worker's CPU.

    With several steps, the row moves straight to the last status (`%(new)s`) and its seq by
    as many; each earlier step's event (`%(status_i)s`, `%(data_i)s`) takes the seq before.
    A statement cannot update one row twice, and nobody else can see the row between two
    transitions of one transaction anyway.

    `batched`: the same for several orders, whose own parameters come as arrays (`%(b_id)s`
    …, unnested into the rows of `b`, `b.i` numbering them); it returns each event's
    (i, seq, attempt). Each row is checked on its own: the orders whose check fails are left
    as they are, the others move. Two rows of `b` naming one order (one order delivered
    twice, both copies in one batch) update it once: one of them wins, as two statements
    would have it."""
    unknown = set(shape.columns + shape.leases) - _ORDER_COLUMNS
    if unknown:
        raise ValueError(f"not columns of orders: {sorted(unknown)}")
    statuses = [OrderStatus(name).value for name in shape.expected]  # a ValueError if not one
    steps = len(shape.statuses)

    def own(name: str) -> str:  # one order's parameter
        return f"b.{name}" if batched else f"%({name})s"

    assignments = ["status = %(new)s", f"last_seq = last_seq + {steps}", "updated_at = now()"]
    assignments += [f"{name} = {own('v_' + name)}" for name in shape.columns]
    assignments += [
        f"{name} = now() + make_interval(secs => {own('v_' + name)})" for name in shape.leases
    ]
    in_statuses = ", ".join(f"'{name}'" for name in statuses)
    conditions = [f"orders.id = {own('id')}", f"status IN ({in_statuses})"]
    if shape.by_owner:
        conditions.append(f"lease_owner = {own('owner')}")
    if shape.no_transaction:
        conditions.append("tx_hash IS NULL")
    if shape.waiting is not None:
        conditions.append("waiting" if shape.waiting else "NOT waiting")
    if shape.claim:
        # A column the steps set too takes the steps' value: they come after the claim.
        claim_assignments = {
            "lease_owner": own("owner"),
            "lease_until": f"now() + make_interval(secs => {own('claim_lease_s')})",
            **_CLAIM_COUNTERS,
        }
        assignments += [
            f"{name} = {value}"
            for name, value in claim_assignments.items()
            if name not in shape.columns + shape.leases
        ]
        conditions.append(_FRESH)

    def carried(name: str) -> str:  # one order's parameter, in the INSERT from `moved`
        return f"moved.{name}" if batched else f"%({name})s"

    events = [
        f"SELECT moved.id, last_seq - {steps - 1 - index}, %(status_{index})s, attempts,"
        f" {carried(f'data_{index}')}, {carried('at')} FROM moved"
        for index in range(steps - 1)
    ]
    events.append(
        f"SELECT moved.id, last_seq, %(new)s, attempts, {carried('data')}, {carried('at')}"
        " FROM moved"
    )
    update_sql = "UPDATE orders SET " + ", ".join(assignments)
    if not batched:
        return (
            f"WITH moved AS ({update_sql} WHERE "
            + " AND ".join(conditions)
            + " RETURNING orders.id, last_seq, attempts) "
            "INSERT INTO order_events (order_id, seq, status, attempt, data, at) "
            + " UNION ALL ".join(events)
            + " RETURNING seq, attempt"
        )
    names = ["i", *shape.row_names()]
    # Binary (`%(…)b`): in text format every element of an array is escaped, and a JSON
    # document is mostly quotes to escape (140 µs of client CPU an order, against 35).
    arrays = ", ".join(
        f"%(b_{name})b::{'integer' if name == 'i' else shape.row_type(name)}[]" for name in names
    )
    returned = ", ".join(
        f"b.{name}" for name in ["i", "at", "data"] + [f"data_{i}" for i in range(steps - 1)]
    )
    return (
        f"WITH b AS (SELECT * FROM unnest({arrays}) AS b({', '.join(names)})), "
        f"moved AS ({update_sql} FROM b WHERE "
        + " AND ".join(conditions)
        + f" RETURNING orders.id, orders.last_seq, orders.attempts, {returned}), "
        "inserted AS (INSERT INTO order_events (order_id, seq, status, attempt, data, at) "
        + " UNION ALL ".join(events)
        + " RETURNING order_id, seq, attempt) "
        "SELECT moved.i, inserted.seq, inserted.attempt FROM inserted"
        " JOIN moved ON moved.id = inserted.order_id"
    )
