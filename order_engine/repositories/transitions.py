"""Compare-and-set transitions of orders, and the two ways they run.

A transition moves an order from one of the statuses the caller expects to a new one and
appends its event, in one statement, and only while the row is as the caller expects it (its
status, its lease, ...): under READ COMMITTED a concurrent second UPDATE waits for the first,
re-checks its WHERE clause and matches nothing, so a duplicated or redelivered task cannot
move an order twice. Consecutive transitions of one order (`Step`s) are one statement too.
`TRANSITIONS` is checked before any SQL runs.

The two ways commit differently, so they have two names:

- `OrderRepository.apply` (and `transition`) run the statement in the caller's unit of work,
  on the session's connection; the caller commits (a cancel).
- `TransitionCommitter.commit` commits it at once, on a pooled connection in autocommit,
  batched with other orders' transitions that meet it in flight (group commit): the
  executor's steps, each a unit of work by itself and never a transaction held across a
  chain call. A repository that commits, against STYLE's rule, so its name says it does.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from order_engine.domain.status import TRANSITIONS, OrderStatus
from order_engine.infra.batching import MAX_BATCH, GroupCommit
from order_engine.infra.db import commit_statement, together_or_each_alone
from order_engine.infra.process import PROCESS
from order_engine.models import Order, OrderEvent


@dataclass(frozen=True)
class Step:
    """One status change of a transition: the status moved to, its event's data, and other
    columns it sets."""

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


@dataclass(frozen=True)
class Transition:
    """One order's transitions through `steps`, checked against the state machine, as the
    statement's shape and this order's parameters of it.

    The order moves from one of `expected` through each step's status to the last one's, with
    one event per step (consecutive seqs, one timestamp), and the steps' `values` set together
    (a later step's value for a column wins; a `LeaseExpiry` value means "that many seconds
    from now" on the database's clock). The conditions are checked once, against the row as it
    was: what two transitions in one transaction would do, in one round trip.

    `lease_owner`: the lease must be that executor's. `require_no_transaction`: no transaction
    was ever built for the order. `require_waiting` (when not None): the order's `waiting` flag
    must be that value. `claim_lease_s`: the transition is also the claim of a fresh order
    (`_FRESH`: never claimed, never built for, runnable): it takes the lease for `lease_owner`,
    which need not hold it yet, and counts the first attempt and delivery.
    """

    order_id: uuid.UUID
    steps: tuple[Step, ...]
    shape: _Shape
    row: dict[str, Any]
    at: datetime

    @classmethod
    def of(
        cls,
        order_id: uuid.UUID,
        expected: OrderStatus | Iterable[OrderStatus],
        steps: Sequence[Step],
        *,
        lease_owner: str | None = None,
        require_no_transaction: bool = False,
        require_waiting: bool | None = None,
        claim_lease_s: int | None = None,
    ) -> Transition:
        expected_set = _legal(expected, steps)
        values: dict[str, Any] = {}
        for step in steps:
            values.update(step.values)
        shape = _Shape(
            tuple(sorted(s.value for s in expected_set)),
            tuple(sorted(k for k, v in values.items() if not isinstance(v, LeaseExpiry))),
            tuple(sorted(k for k, v in values.items() if isinstance(v, LeaseExpiry))),
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
            row[f"v_{name}"] = _parameter(value)
        return cls(order_id, tuple(steps), shape, row, at)

    @property
    def sql(self) -> str:
        """The statement for this order alone, written once per shape."""
        return _transition_sql(self.shape)

    @property
    def params(self) -> dict[str, Any]:
        return self.shape.shared() | self.row

    def events(self, rows: Sequence[tuple[Any, ...]]) -> list[OrderEvent] | None:
        """The events the statement's (seq, attempt) rows recorded, in seq order; None when it
        matched nothing (nothing written: the order was not as expected)."""
        if not rows:
            return None
        return [
            OrderEvent(
                order_id=self.order_id,
                seq=seq,
                status=step.status.value,
                attempt=attempt,
                data=step.event_data,
                at=self.at,
            )
            # RETURNING has no order.
            for (seq, attempt), step in zip(sorted(rows), self.steps, strict=True)
        ]


def _legal(
    expected: OrderStatus | Iterable[OrderStatus], steps: Sequence[Step]
) -> list[OrderStatus]:
    """The expected statuses, once every step is a legal transition (else a ValueError)."""
    if not steps:
        raise ValueError("no step to take")
    expected_set = [expected] if isinstance(expected, OrderStatus) else list(expected)
    illegal = [s for s in expected_set if steps[0].status not in TRANSITIONS[s]]
    if illegal:
        raise ValueError(f"no transition from {', '.join(illegal)} to {steps[0].status}")
    for before, after in zip(steps, steps[1:], strict=False):
        if after.status not in TRANSITIONS[before.status]:
            raise ValueError(f"no transition from {before.status} to {after.status}")
    return expected_set


def _parameter(value: Any) -> Any:
    """A column value as the statement's parameter: a lease's seconds, JSON as JSONB."""
    if isinstance(value, LeaseExpiry):
        return value.seconds
    return Jsonb(value) if isinstance(value, dict | list) else value


class TransitionCommitter:
    """Transitions committed now, each a unit of work by itself: the exception to "repositories
    never commit", named here. The executor's steps need it: each must be durable before the
    chain call that follows it, and no transaction may be held across that call.

    `commit` runs the statement on a pooled connection of `engine` in autocommit, through
    psycopg (`db.commit_statement`: no BEGIN or COMMIT round trip, no session; 290 µs of client
    CPU per step where a one-statement session transaction took 640 µs, under gevent). While an
    earlier batch of the same shape is in flight, the call waits, and the transitions of other
    orders that arrive meanwhile go with it as one statement (group commit, `infra.batching`),
    each order's compare-and-set checked on its own row. For a transition that is part of a
    larger unit of work, `OrderRepository.apply` joins the caller's instead.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def of_session(cls, session: Session) -> TransitionCommitter:
        """The committer on the engine `session` is bound to. A session bound to a connection
        (a test's rolled-back one) has no engine to commit on of its own: refused, rather than
        quietly joining that connection's transaction."""
        bind = session.get_bind()
        if not isinstance(bind, Engine):
            raise TypeError(
                "transitions commit on their own pooled connections; this session is bound to"
                " a connection (OrderRepository.apply joins its transaction)"
            )
        return cls(bind)

    def commit(self, transition: Transition) -> list[OrderEvent] | None:
        """Commit `transition` now, batched with other orders' that meet it in flight: its
        events in seq order, or None (nothing written) when the order was not as expected."""
        return transition.events(self._batches().submit(transition.shape, transition.row))

    def queued(self) -> int:
        """Transitions waiting for a batch (those of the batches in flight aside)."""
        return self._batches().queued()

    def _batches(self) -> GroupCommit[dict[str, Any], list[tuple[Any, ...]]]:
        """This process's batcher of transitions on the engine (one flusher per shape)."""
        return PROCESS.get(
            "transition_batches",
            id(self.engine),
            lambda: GroupCommit(
                "transitions",
                functools.partial(_run_transitions, self.engine),
                max_batch=MAX_BATCH,
            ),
        )


_ORDER_COLUMNS = frozenset(cast(Table, Order.__table__).columns.keys())
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
        return commit_statement(engine, _transition_sql(shape), shape.shared() | row)

    def together() -> list[list[tuple[Any, ...]]]:
        params = shape.shared()
        params["b_i"] = list(range(len(rows)))
        for name in shape.row_names():
            params[f"b_{name}"] = _one_type([row[name] for row in rows])
        by_row: list[list[tuple[Any, ...]]] = [[] for _ in rows]
        for index, seq, attempt in commit_statement(
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

    def own(name: str) -> str:  # one order's parameter
        return f"b.{name}" if batched else f"%({name})s"

    def carried(name: str) -> str:  # one order's parameter, in the INSERT from `moved`
        return f"moved.{name}" if batched else f"%({name})s"

    update_sql = "UPDATE orders SET " + ", ".join(_assignments(shape, own))
    where = " AND ".join(_conditions(shape, own))
    events = " UNION ALL ".join(_event_rows(len(shape.statuses), carried))
    if not batched:
        return (
            f"WITH moved AS ({update_sql} WHERE {where} RETURNING orders.id, last_seq, attempts) "
            f"INSERT INTO order_events (order_id, seq, status, attempt, data, at) {events}"
            " RETURNING seq, attempt"
        )
    names = ["i", *shape.row_names()]
    # Binary (`%(…)b`): in text format every element of an array is escaped, and a JSON
    # document is mostly quotes to escape (140 µs of client CPU an order, against 35).
    arrays = ", ".join(
        f"%(b_{name})b::{'integer' if name == 'i' else shape.row_type(name)}[]" for name in names
    )
    returned = ", ".join(
        f"b.{name}"
        for name in ["i", "at", "data"] + [f"data_{i}" for i in range(len(shape.statuses) - 1)]
    )
    return (
        f"WITH b AS (SELECT * FROM unnest({arrays}) AS b({', '.join(names)})), "
        f"moved AS ({update_sql} FROM b WHERE {where}"
        f" RETURNING orders.id, orders.last_seq, orders.attempts, {returned}), "
        "inserted AS (INSERT INTO order_events (order_id, seq, status, attempt, data, at) "
        f"{events} RETURNING order_id, seq, attempt) "
        "SELECT moved.i, inserted.seq, inserted.attempt FROM inserted"
        " JOIN moved ON moved.id = inserted.order_id"
    )


def _assignments(shape: _Shape, own: Callable[[str], str]) -> list[str]:
    """The UPDATE's SET list: the new status and seq, the steps' columns, and a claim's."""
    steps = len(shape.statuses)
    assignments = ["status = %(new)s", f"last_seq = last_seq + {steps}", "updated_at = now()"]
    assignments += [f"{name} = {own('v_' + name)}" for name in shape.columns]
    assignments += [
        f"{name} = now() + make_interval(secs => {own('v_' + name)})" for name in shape.leases
    ]
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
    return assignments


def _conditions(shape: _Shape, own: Callable[[str], str]) -> list[str]:
    """The WHERE clause's checks of the row: the compare of compare-and-set."""
    statuses = [OrderStatus(name).value for name in shape.expected]  # a ValueError if not one
    in_statuses = ", ".join(f"'{name}'" for name in statuses)
    conditions = [f"orders.id = {own('id')}", f"status IN ({in_statuses})"]
    if shape.by_owner:
        conditions.append(f"lease_owner = {own('owner')}")
    if shape.no_transaction:
        conditions.append("tx_hash IS NULL")
    if shape.waiting is not None:
        conditions.append("waiting" if shape.waiting else "NOT waiting")
    if shape.claim:
        conditions.append(_FRESH)
    return conditions


def _event_rows(steps: int, carried: Callable[[str], str]) -> list[str]:
    """The event INSERT's rows, one SELECT from `moved` per step: the last step's event takes
    the row's new `last_seq`, each earlier one the seq before."""
    events = [
        f"SELECT moved.id, last_seq - {steps - 1 - index}, %(status_{index})s, attempts,"
        f" {carried(f'data_{index}')}, {carried('at')} FROM moved"
        for index in range(steps - 1)
    ]
    events.append(
        f"SELECT moved.id, last_seq, %(new)s, attempts, {carried('data')}, {carried('at')}"
        " FROM moved"
    )
    return events
