"""The statements of the API's hot paths, as plain SQL: the order row with its first event at
intake (with the count its cap is on, when it has one), and an order's history for
the streams.

Intake's insert runs one of two ways, and the two commit differently, so they have two names
(as the executor's transitions do: repositories/transitions.py):

- `IntakeCommitter` commits it at once, as a unit of work by itself, on a pooled connection in
  autocommit, batched with concurrent requests' (group commit): the API's submission far from
  the account's cap, intake's hot path. A repository that commits, so its name says it does.
- `IntakeRepository` runs it in the caller's unit of work, on the session's connection; the
  caller commits: the submission near the cap, under the account's lock. It never commits.

An order is counted against one of its account's two caps: a waiting limit or sniper order or
a TWAP parent (`waiting`) against the waiting orders, any other (a market order, a triggered one,
a TWAP's slice) against the orders in flight, so that a book of waiting orders never blocks the
orders that run.

Plain SQL text rather than ORM statements because each runs once per request: building an ORM
statement cost more CPU than running it. The ORM's data access for orders is OrderRepository.
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from order_engine.infra.batching import GroupCommit
from order_engine.infra.db import commit_statement, session_statement, together_or_each_alone
from order_engine.infra.process import PROCESS
from order_engine.models import Order


class Intake(enum.Enum):
    """What an intake statement did."""

    INSERTED = "inserted"
    NEAR_CAP = "near cap"  # nothing inserted: the account has `far` orders of its kind or more
    KEY_TAKEN = "key taken"  # nothing inserted: an order under this Idempotency-Key exists


class IntakeRepository:
    """Intake's statements in the caller's unit of work (the session's transaction, begun if
    none is): the caller commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_with_first_event(
        self, order: Order, key: str | None, now: datetime, first_data: str
    ) -> bool:
        """Insert `order` and its `pending` event (seq 1, data as JSON text) in one statement;
        False when the account already has an order under the same Idempotency-Key."""
        _unfinished, inserted = self._run(_insert_params(order, key, now, first_data))
        return inserted

    def insert_unless_near_cap(
        self, order: Order, key: str | None, now: datetime, first_data: str, far: int
    ) -> Intake:
        """As `insert_with_first_event`, in the same statement as the count of the account's
        unfinished orders of the order's kind (waiting or not): nothing is inserted when it
        reaches `far` (NEAR_CAP: the caller then takes the locked path) or when the
        Idempotency-Key is taken (KEY_TAKEN)."""
        params = _insert_params(order, key, now, first_data) | {"up_to": far}
        return _outcome(*self._run(params), far)

    def _run(self, params: dict[str, Any]) -> tuple[int, bool]:
        return _intake_alone(functools.partial(session_statement, self.session), params)

    def count_unfinished(self, account_id: uuid.UUID, waiting: bool, up_to: int) -> int:
        """The account's unfinished orders that are waiting (or not), counted up to `up_to`
        (the partial index ix_orders_account_unfinished_waiting; bounded, so a submission never
        scans more than its cap however many orders are open)."""
        params = {"account": account_id, "waiting": waiting, "up_to": up_to}
        row = self.session.connection().exec_driver_sql(COUNT_UNFINISHED, params).one()
        return int(row[0])

    def history(
        self, order_id: uuid.UUID, after_seq: int, account_id: uuid.UUID | None
    ) -> Sequence[Any]:
        """(seq, status, at, attempt, data) rows after `after_seq`: one all-NULL row when the
        order has none after it, no row when there is no such order (or not `account_id`'s)."""
        return (
            self.session.connection()
            .exec_driver_sql(HISTORY, {"id": order_id, "after": after_seq, "account": account_id})
            .all()
        )


class IntakeCommitter:
    """Intake's inserts committed now, each a unit of work by itself: the exception to
    "repositories never commit", named here (as `TransitionCommitter` is for transitions).

    A call runs its statement on a pooled connection of `engine` in autocommit, through psycopg
    (`db.commit_statement`). While an earlier batch is in flight, the call waits, and the
    inserts of other requests that arrive meanwhile go with it as one statement (group commit,
    `infra.batching`; `_run_intake`), each order counted against its own cap. For an insert
    that is part of a larger unit of work, `IntakeRepository` joins the caller's instead.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_with_first_event(
        self, order: Order, key: str | None, now: datetime, first_data: str
    ) -> bool:
        """`IntakeRepository.insert_with_first_event`, committed when it returns."""
        params = _insert_params(order, key, now, first_data)
        _unfinished, inserted = _intake_batches(self.engine).submit(False, params)
        return inserted

    def insert_unless_near_cap(
        self, order: Order, key: str | None, now: datetime, first_data: str, far: int
    ) -> Intake:
        """`IntakeRepository.insert_unless_near_cap`, committed when it returns."""
        params = _insert_params(order, key, now, first_data) | {"up_to": far}
        return _outcome(*_intake_batches(self.engine).submit(True, params), far)

    def queued(self) -> int:
        """Inserts waiting for a batch (those of the batches in flight aside)."""
        return _intake_batches(self.engine).queued()

    def in_flight(self) -> tuple[int, int]:
        """(inserts, statements) of the batches in flight (`GroupCommit.in_flight`)."""
        return _intake_batches(self.engine).in_flight()


def _outcome(unfinished: int, inserted: bool, far: int) -> Intake:
    if inserted:
        return Intake.INSERTED
    return Intake.NEAR_CAP if unfinished >= far else Intake.KEY_TAKEN


def _insert_params(order: Order, key: str | None, now: datetime, first_data: str) -> dict[str, Any]:
    return {
        "id": order.id,
        "account_id": order.account_id,
        "type": order.type,
        "token_in": order.token_in,
        "token_out": order.token_out,
        "amount_in": order.amount_in,
        "slippage_bps": order.slippage_bps,
        "client_order_id": order.client_order_id,
        "idempotency_key": key,
        "request_fingerprint": order.request_fingerprint,
        "now": now,
        "limit_price": order.limit_price,
        "max_price": order.max_price,
        "trigger_price": order.trigger_price,
        "expires_at": order.expires_at,
        "waiting": order.waiting,
        "triggered_at": order.triggered_at,
        "stop_price": order.stop_price,
        "size_class": order.size_class,
        "trail_bps": order.trail_bps,
        "activation_price": order.activation_price,
        "peak_price": order.peak_price,
        "trail_since": order.trail_since,
        "trigger_leg": order.trigger_leg,
        "slices": order.slices,
        "interval_s": order.interval_s,
        "priority_fee_micro_lamports": order.priority_fee_micro_lamports,
        "max_fee_lamports": order.max_fee_lamports,
        "mev_protection": order.mev_protection,
        "data": first_data,
    }


def _intake_batches(engine: Engine) -> GroupCommit[dict[str, Any], tuple[int, bool]]:
    """This process's batcher of intake statements on `engine`; a batch's kind is whether its
    orders are counted against a cap (each row then carries its own `far` as `up_to`: accounts'
    caps differ, and so do an account's two)."""
    return PROCESS.get(
        "intake_batches",
        id(engine),
        lambda: GroupCommit("intake", functools.partial(_run_intake, engine)),
    )


def _run_intake(
    engine: Engine, capped: Hashable, rows: Sequence[dict[str, Any]]
) -> list[tuple[int, bool] | BaseException]:
    """Concurrent requests' intake statements, one batch: alone, the one-order statement;
    together, one statement for all (one round trip, one commit). Each returns (the account's
    unfinished orders the order was counted against, whether it was inserted). A failure on
    one order's data runs each alone again, so that only that request hears of it; a lost
    connection fails them all, as it would have failed each."""

    def together() -> list[tuple[int, bool]]:
        params: dict[str, Any] = {"b_i": list(range(len(rows)))}
        for name in _BATCH_COLUMNS + (("up_to",) if capped else ()):
            params[f"b_{name}"] = [row[name] for row in rows]
        sql = INSERT_ORDERS_BATCH_CAPPED if capped else INSERT_ORDERS_BATCH
        by_row: list[tuple[int, bool]] = [(0, False)] * len(rows)
        for index, seen, inserted in commit_statement(engine, sql, params):
            by_row[index] = (seen, bool(inserted))
        return by_row

    alone = functools.partial(_intake_alone, functools.partial(commit_statement, engine))
    return together_or_each_alone(rows, together, alone)


def _intake_alone(
    run: Callable[[str, dict[str, Any]], list[tuple[Any, ...]]], row: dict[str, Any]
) -> tuple[int, bool]:
    """One order's intake statement, run by `run(sql, params)`: (the account's unfinished
    orders of its kind it was counted against, 0 without a cap (no `up_to`); whether it was
    inserted)."""
    if "up_to" not in row:
        return 0, bool(run(INSERT_ORDER_WITH_FIRST_EVENT, row))
    [(unfinished, order_id)] = run(
        INSERT_ORDER_UNLESS_NEAR_CAP, {**row, "account": row["account_id"]}
    )
    return unfinished, order_id is not None


# The account's unfinished orders of one kind (waiting, or not: in flight), counted up to
# `up_to`. Its WHERE is the partial index's predicate (migration 0008) and its equalities the
# index's columns, so it is an index-only range scan of that kind's entries alone: an account's
# waiting orders are never read to count its orders in flight. Among unfinished orders only a
# `pending` one waits (triggering, expiring and cancelling all leave `waiting` or `pending`).
COUNT_UNFINISHED = (
    "SELECT count(*) FROM (SELECT 1 FROM orders WHERE account_id = %(account)s"
    " AND waiting = %(waiting)s AND status NOT IN ('confirmed', 'failed', 'cancelled')"
    " LIMIT %(up_to)s) AS unfinished"
)


# Intake's one statement: the order row and its `pending` event (seq 1, so `last_seq` is 1
# from the start), in one round trip with no read-back. Before, the ORM did INSERT … RETURNING,
# a SELECT of the row, the event INSERT and an UPDATE of `last_seq` (four round trips), and
# building the statements cost more CPU than running them (about half of intake's CPU under
# yappi). Plain SQL text is parsed once per process, and psycopg prepares it server-side after
# a few runs. ON CONFLICT DO NOTHING: a concurrent request with the same key waits on the
# unique index until the first commits, then inserts nothing (no row comes back, so no event
# either); it then replays that order. The event's foreign key is checked at the end of the
# statement, when the order row exists.
_INSERT_ORDER = """\
INSERT INTO orders (
        id, account_id, type, status, token_in, token_out, amount_in, slippage_bps,
        client_order_id,
        idempotency_key, request_fingerprint, last_seq, attempts, deliveries,
        created_at, updated_at, dispatched_at,
        limit_price, max_price, trigger_price, expires_at, waiting, triggered_at,
        stop_price, size_class, trail_bps, activation_price, peak_price, trail_since, trigger_leg,
        slices, interval_s, priority_fee_micro_lamports, max_fee_lamports, mev_protection
    )"""
_ORDER_VALUES = """\
        %(id)s, %(account_id)s, %(type)s, 'pending', %(token_in)s, %(token_out)s, %(amount_in)s,
        %(slippage_bps)s, %(client_order_id)s, %(idempotency_key)s, %(request_fingerprint)s,
        1, 0, 0, %(now)s, %(now)s, %(now)s,
        %(limit_price)s, %(max_price)s, %(trigger_price)s, %(expires_at)s, %(waiting)s,
        %(triggered_at)s, %(stop_price)s, %(size_class)s, %(trail_bps)s, %(activation_price)s,
        %(peak_price)s, %(trail_since)s, %(trigger_leg)s,
        %(slices)s, %(interval_s)s, %(priority_fee_micro_lamports)s, %(max_fee_lamports)s,
        %(mev_protection)s"""
_FIRST_EVENT = """\
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, 1, 'pending', 0, %(data)s::jsonb, %(now)s FROM new_order
RETURNING order_id"""

INSERT_ORDER_WITH_FIRST_EVENT = f"""\
WITH new_order AS (
    {_INSERT_ORDER}
    VALUES (
{_ORDER_VALUES}
    )
    ON CONFLICT (account_id, idempotency_key) DO NOTHING
    RETURNING id
)
{_FIRST_EVENT}"""

# The same, with the count of the order's kind: intake's common case (an account with a cap, far
# from it) in one statement on an autocommit connection, where it took four round trips before
# (BEGIN, the count, the insert, COMMIT). One row comes back: the unfinished orders counted up
# to `far`, and the new order's id or NULL. NULL with a count under `far` can only be the
# Idempotency-Key conflict (without a key nothing conflicts).
# - Every part of one statement reads one snapshot, taken at its start (READ COMMITTED): the
#   count sees the orders committed before it, not concurrent submissions still in flight, as
#   the separate count did; IN_FLIGHT_SLACK absorbs those, and near the cap the service takes
#   the locked path. Nor does the count see the order this statement inserts (a data-modifying
#   CTE's rows are invisible to the rest of its statement).
# - ON CONFLICT is not bound to that snapshot: it checks the unique index for the latest
#   version, waits for a concurrent insert of the same key to commit (or roll back: then ours
#   goes in), and DO NOTHING returns no row for it. The conflicting order may have been
#   committed after this statement's snapshot, so no part of the statement can read it back;
#   the replay reads it in a statement of its own, which takes a new snapshot.
# - The count ends at `far` (LIMIT), so it reads at most `far` index entries.
INSERT_ORDER_UNLESS_NEAR_CAP = f"""\
WITH unfinished (n) AS (
    {COUNT_UNFINISHED}
), new_order AS (
    {_INSERT_ORDER}
    SELECT
{_ORDER_VALUES}
    FROM unfinished WHERE n < %(up_to)s
    ON CONFLICT (account_id, idempotency_key) DO NOTHING
    RETURNING id
), first_event AS (
{_FIRST_EVENT}
)
SELECT n, (SELECT order_id FROM first_event) FROM unfinished"""

# The same for several requests' orders in one statement (group commit, `_run_intake`): each
# order's values are one element of an array parameter (binary: no escaping), unnested into
# the rows of `b`. ON CONFLICT DO NOTHING also skips a second row of the batch with the same
# key as a first (a client's retry racing its request): only the first is inserted. Each row
# comes back as (b.i, the unfinished orders it was counted against, whether it was inserted).
_BATCH_COLUMNS = (
    "id", "account_id", "type", "token_in", "token_out", "amount_in", "slippage_bps",
    "client_order_id", "idempotency_key", "request_fingerprint", "now", "limit_price",
    "max_price", "trigger_price", "expires_at", "waiting", "triggered_at", "stop_price",
    "size_class", "trail_bps", "activation_price", "peak_price", "trail_since", "trigger_leg",
    "slices", "interval_s", "priority_fee_micro_lamports", "max_fee_lamports",
    "mev_protection", "data",
)  # fmt: skip


def _batch_type(name: str) -> str:
    special = {"now": "timestamptz", "data": "text", "up_to": "integer"}
    if name in special:
        return special[name]
    column = cast(Table, Order.__table__).columns[name]
    return str(column.type.compile(dialect=postgresql.dialect()))


def _batch_rows(columns: Sequence[str]) -> str:
    return (
        "WITH b AS (SELECT * FROM unnest(%(b_i)b::integer[], "
        + ", ".join(f"%(b_{name})b::{_batch_type(name)}[]" for name in columns)
        + f") AS b(i, {', '.join(columns)}))"
    )


_BATCH_ROWS = _batch_rows(_BATCH_COLUMNS)
_BATCH_VALUES = _ORDER_VALUES.replace("%(", "b.").replace(")s", "")
_BATCH_FIRST_EVENTS = """first_event AS (
    INSERT INTO order_events (order_id, seq, status, attempt, data, at)
    SELECT b.id, 1, 'pending', 0, b.data::jsonb, b.now FROM new_order JOIN b ON b.id = new_order.id
    RETURNING order_id
)"""

INSERT_ORDERS_BATCH = f"""{_BATCH_ROWS},
new_order AS (
    {_INSERT_ORDER}
    SELECT
{_BATCH_VALUES}
    FROM b ORDER BY b.i
    ON CONFLICT (account_id, idempotency_key) DO NOTHING
    RETURNING id
),
{_BATCH_FIRST_EVENTS}
SELECT b.i, 0, first_event.order_id IS NOT NULL
FROM b LEFT JOIN first_event ON first_event.order_id = b.id"""

# With the caps: each order is counted against its account's unfinished orders of its kind (as
# COUNT_UNFINISHED counts them, up to the row's own `up_to`) plus the batch's earlier orders of
# the same account and kind, so a batch admits no more than the same requests one after the
# other would.
INSERT_ORDERS_BATCH_CAPPED = f"""{_batch_rows(_BATCH_COLUMNS + ("up_to",))},
counted AS (
    SELECT b.*, (
        SELECT count(*) FROM (
            SELECT 1 FROM orders o WHERE o.account_id = b.account_id AND o.waiting = b.waiting
            AND o.status NOT IN ('confirmed', 'failed', 'cancelled') LIMIT b.up_to
        ) AS unfinished
    ) + row_number() OVER (PARTITION BY b.account_id, b.waiting ORDER BY b.i) - 1 AS seen
    FROM b
),
new_order AS (
    {_INSERT_ORDER}
    SELECT
{_BATCH_VALUES.replace("b.", "counted.")}
    FROM counted WHERE counted.seen < counted.up_to ORDER BY counted.i
    ON CONFLICT (account_id, idempotency_key) DO NOTHING
    RETURNING id
),
{_BATCH_FIRST_EVENTS}
SELECT b.i, counted.seen, first_event.order_id IS NOT NULL
FROM b JOIN counted ON counted.i = b.i LEFT JOIN first_event ON first_event.order_id = b.id"""

# An order's events after a seq, or one all-NULL row when it has none after it, or no row at
# all when there is no such order (the LEFT JOIN keeps the order row without events).
HISTORY = """\
SELECT e.seq, e.status, e.at, e.attempt, e.data
FROM orders o
LEFT JOIN order_events e ON e.order_id = o.id AND e.seq > %(after)s
WHERE o.id = %(id)s AND (%(account)s::uuid IS NULL OR o.account_id = %(account)s::uuid)
ORDER BY e.seq"""
