"""The statements of the API's hot paths, as plain SQL: the order row with its first event at
intake (with the account's in-flight count, when it has a cap), and an order's history for
the streams. Takes a Session; never commits (the service's unit of work does, or a statement
run outside one is its own: `db.run_statement`).

Plain SQL text rather than ORM statements because each runs once per request: building an ORM
statement cost more CPU than running it. The ORM's data access for orders is OrderRepository.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from order_engine.db import run_statement
from order_engine.models import Order
from order_engine.repositories.order import COUNT_UNFINISHED


class Intake(enum.Enum):
    """What an intake statement did."""

    INSERTED = "inserted"
    NEAR_CAP = "near cap"  # nothing inserted: the account has `far` unfinished orders or more
    KEY_TAKEN = "key taken"  # nothing inserted: an order under this Idempotency-Key exists


class IntakeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_with_first_event(
        self, order: Order, key: str | None, now: datetime, first_data: str
    ) -> bool:
        """Insert `order` and its `pending` event (seq 1, data as JSON text) in one statement;
        False when the account already has an order under the same Idempotency-Key."""
        params = _insert_params(order, key, now, first_data)
        return bool(run_statement(self.session, INSERT_ORDER_WITH_FIRST_EVENT, params))

    def insert_unless_near_cap(
        self, order: Order, key: str | None, now: datetime, first_data: str, far: int
    ) -> Intake:
        """As `insert_with_first_event`, in the same statement as the count of the account's
        unfinished orders: nothing is inserted when it reaches `far` (NEAR_CAP: the caller
        then takes the locked path) or when the Idempotency-Key is taken (KEY_TAKEN)."""
        params = {**_insert_params(order, key, now, first_data), "account": order.account_id}
        [(unfinished, inserted)] = run_statement(
            self.session, INSERT_ORDER_UNLESS_NEAR_CAP, {**params, "up_to": far}
        )
        if inserted is not None:
            return Intake.INSERTED
        return Intake.NEAR_CAP if unfinished >= far else Intake.KEY_TAKEN

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
        "data": first_data,
    }


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
        limit_price, max_price, trigger_price, expires_at, waiting, triggered_at
    )"""
_ORDER_VALUES = """\
        %(id)s, %(account_id)s, %(type)s, 'pending', %(token_in)s, %(token_out)s, %(amount_in)s,
        %(slippage_bps)s, %(client_order_id)s, %(idempotency_key)s, %(request_fingerprint)s,
        1, 0, 0, %(now)s, %(now)s, %(now)s,
        %(limit_price)s, %(max_price)s, %(trigger_price)s, %(expires_at)s, %(waiting)s,
        %(triggered_at)s"""
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

# The same, with the in-flight count: intake's common case (an account with a cap, far from
# it) in one statement on an autocommit connection, where it took four round trips before
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

# An order's events after a seq, or one all-NULL row when it has none after it, or no row at
# all when there is no such order (the LEFT JOIN keeps the order row without events).
HISTORY = """\
SELECT e.seq, e.status, e.at, e.attempt, e.data
FROM orders o
LEFT JOIN order_events e ON e.order_id = o.id AND e.seq > %(after)s
WHERE o.id = %(id)s AND (%(account)s::uuid IS NULL OR o.account_id = %(account)s::uuid)
ORDER BY e.seq"""
