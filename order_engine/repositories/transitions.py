"""Compare-and-set transitions of orders: the UPDATE feeding the event INSERT, and its batching.

A transition moves an order from one of the statuses expected to a new one and appends its
event in one statement, and only if the row is still as expected (its status, its lease);
see `_transition_sql`.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql

from order_engine.domain.status import OrderStatus
from order_engine.infra.batching import MAX_BATCH, GroupCommit
from order_engine.infra.db import run_on_engine, together_or_each_alone
from order_engine.infra.process import PROCESS
from order_engine.models import Order


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
