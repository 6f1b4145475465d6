"""The statements of the API's hot paths, as plain SQL: the order row with its first event at
intake, and an order's history for the streams. Takes a Session; never commits (the service's
unit of work does).

Plain SQL text rather than ORM statements because each runs once per request: building an ORM
statement cost more CPU than running it. The ORM's data access for orders is OrderRepository.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from order_engine.models import Order


class IntakeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_with_first_event(
        self, order: Order, key: str | None, now: datetime, first_data: str
    ) -> bool:
        """Insert `order` and its `pending` event (seq 1, data as JSON text) in one statement;
        False when the account already has an order under the same Idempotency-Key."""
        row = (
            self.session.connection()
            .exec_driver_sql(
                INSERT_ORDER_WITH_FIRST_EVENT,
                {
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
                },
            )
            .first()
        )
        return row is not None

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


# Intake's one statement: the order row and its `pending` event (seq 1, so `last_seq` is 1
# from the start), in one round trip with no read-back. Before, the ORM did INSERT … RETURNING,
# a SELECT of the row, the event INSERT and an UPDATE of `last_seq` (four round trips), and
# building the statements cost more CPU than running them (about half of intake's CPU under
# yappi). Plain SQL text is parsed once per process, and psycopg prepares it server-side after
# a few runs. ON CONFLICT DO NOTHING: a concurrent request with the same key waits on the
# unique index until the first commits, then inserts nothing (no row comes back, so no event
# either); it then replays that order. The event's foreign key is checked at the end of the
# statement, when the order row exists.
INSERT_ORDER_WITH_FIRST_EVENT = """\
WITH new_order AS (
    INSERT INTO orders (
        id, account_id, type, status, token_in, token_out, amount_in, slippage_bps,
        client_order_id,
        idempotency_key, request_fingerprint, last_seq, attempts, deliveries,
        created_at, updated_at, dispatched_at,
        limit_price, max_price, trigger_price, expires_at, waiting, triggered_at
    )
    VALUES (
        %(id)s, %(account_id)s, %(type)s, 'pending', %(token_in)s, %(token_out)s, %(amount_in)s,
        %(slippage_bps)s, %(client_order_id)s, %(idempotency_key)s, %(request_fingerprint)s,
        1, 0, 0, %(now)s, %(now)s, %(now)s,
        %(limit_price)s, %(max_price)s, %(trigger_price)s, %(expires_at)s, %(waiting)s,
        %(triggered_at)s
    )
    ON CONFLICT (account_id, idempotency_key) DO NOTHING
    RETURNING id
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, 1, 'pending', 0, %(data)s::jsonb, %(now)s FROM new_order
RETURNING order_id"""

# An order's events after a seq, or one all-NULL row when it has none after it, or no row at
# all when there is no such order (the LEFT JOIN keeps the order row without events).
HISTORY = """\
SELECT e.seq, e.status, e.at, e.attempt, e.data
FROM orders o
LEFT JOIN order_events e ON e.order_id = o.id AND e.seq > %(after)s
WHERE o.id = %(id)s AND (%(account)s::uuid IS NULL OR o.account_id = %(account)s::uuid)
ORDER BY e.seq"""
