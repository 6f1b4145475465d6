"""Data access for the trigger engine: the orders that wait for the market to rise to them
(limits, snipers, a bracket's take-profit, a trailing stop's activation price), triggering and
expiring waiting orders of every type. Never commits. The orders that wait for the market to
fall to them are `repositories/stops.py`'s.

Every statement here goes through the partial indexes on waiting orders: a per-pair range scan
up to the pair's best price (`ix_orders_waiting_trigger`) and a range scan of the expiries due
(`ix_orders_waiting_expiry`), so the work grows with the orders returned, not with the book.
Triggering and expiring are compare-and-set on `waiting AND status = 'pending'`: two schedulers
(or one that crashed and ran again) move an order once, and a cancel of the same row either
happens first (the trigger then matches nothing) or after (the executor's claim then does).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from order_engine.infra.db import run_statement
from order_engine.models import Order, OrderEvent


@dataclass(frozen=True)
class PairBound:
    """A pair as orders name it and the best price any order of it can fill at now."""

    token_in: str
    token_out: str
    best_price: Decimal  # tokenOut per tokenIn, rounded up: an upper bound


@dataclass(frozen=True)
class Candidate:
    """A waiting order that may trigger now, with its trigger columns."""

    id: uuid.UUID
    type: str
    token_in: str
    token_out: str
    amount_in: Decimal
    limit_price: Decimal | None
    max_price: Decimal | None
    stop_price: Decimal | None = None
    size_class: int | None = None
    trail_bps: int | None = None
    activation_price: Decimal | None = None
    peak_price: Decimal | None = None
    trail_since: datetime | None = None


# What a candidate query reads of each order (Candidate's fields, in order).
CANDIDATE_COLUMNS = (
    "id, type, token_in, token_out, amount_in, limit_price, max_price, stop_price, size_class,"
    " trail_bps, activation_price, peak_price, trail_since"
)

_ANY_WAITING_SQL = "SELECT EXISTS (SELECT 1 FROM orders WHERE waiting AND status = 'pending')"

_CANDIDATES_SQL = f"""
SELECT o.*
  FROM unnest(%(ins)s::text[], %(outs)s::text[], %(bounds)s::numeric[]) AS p(tin, tout, bound)
 CROSS JOIN LATERAL (
        SELECT {CANDIDATE_COLUMNS}
          FROM orders
         WHERE waiting AND status = 'pending'
           AND token_in = p.tin AND token_out = p.tout AND trigger_price <= p.bound
         ORDER BY trigger_price
         LIMIT %(per_pair)s
       ) AS o
"""

_TRIGGER_SQL = """
WITH moved AS (
    UPDATE orders AS o
       SET status = 'routing', waiting = false, triggered_at = now(), dispatched_at = now(),
           attempts = o.attempts + 1, last_seq = o.last_seq + 1, updated_at = now(),
           dex = t.data::jsonb #>> '{decision,dex}',
           route = t.data::jsonb -> 'decision',
           quoted_amount_out = (t.data::jsonb #>> '{decision,amountOut}')::numeric,
           trigger_leg = t.data::jsonb ->> 'leg'
      FROM unnest(%(ids)s::uuid[], %(data)s::text[]) AS t(id, data)
     WHERE o.id = t.id AND o.waiting AND o.status = 'pending'
 RETURNING o.id, o.last_seq, o.attempts, t.data
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, last_seq, 'routing', attempts, data::jsonb, %(at)s FROM moved
RETURNING order_id, seq, attempt, data
"""

_EXPIRE_SQL = """
WITH due AS (
    SELECT id FROM orders
     WHERE waiting AND status = 'pending' AND expires_at IS NOT NULL AND expires_at <= now()
     ORDER BY expires_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE orders AS o
       SET status = 'failed', waiting = false, last_seq = o.last_seq + 1, updated_at = now(),
           failure_code = %(code)s, failure_reason = %(reason)s, failure_retryable = false
      FROM due
     WHERE o.id = due.id AND o.waiting AND o.status = 'pending'
 RETURNING o.id, o.last_seq, o.attempts, o.expires_at, o.type, o.created_at
), inserted AS (
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, last_seq, 'failed', attempts,
       %(data)s::jsonb || jsonb_build_object('attempts', attempts,
                                             'expiresAt', to_char(expires_at AT TIME ZONE 'UTC',
                                                                  'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
       %(at)s
  FROM moved
RETURNING order_id, seq, attempt, data
)
-- The type and acceptance time ride along for the metrics (orders finished by type).
SELECT inserted.*, moved.type, moved.created_at
  FROM inserted JOIN moved ON moved.id = inserted.order_id
"""


class TriggerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def any_waiting(self) -> bool:
        """Whether any order waits for its trigger: a look at the waiting orders' partial
        index (migration 0007), which is empty when none waits."""
        [(found,)] = run_statement(self.session, _ANY_WAITING_SQL, {})
        return bool(found)

    def candidates(self, pairs: Sequence[PairBound], per_pair: int) -> list[Candidate]:
        """Waiting orders whose trigger price is at or below their pair's best price: the only
        ones that can trigger now (each still needs its own exact quote). One round trip."""
        if not pairs:
            return []
        params = {
            "ins": [p.token_in for p in pairs],
            "outs": [p.token_out for p in pairs],
            "bounds": [p.best_price for p in pairs],
            "per_pair": per_pair,
        }
        rows = self.session.connection().exec_driver_sql(_CANDIDATES_SQL, params).all()
        return [Candidate(*row) for row in rows]

    def trigger(self, triggers: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> list[OrderEvent]:
        """Compare-and-set each order from waiting to `routing` with its event (the trigger's
        route decision: `data["decision"]` also fills the order's dex, route and quote; a
        bracket's `data["leg"]` its leg), no lease held, ready for the ordinary execution task
        to claim; returns the events of those that moved."""
        if not triggers:
            return []
        at = datetime.now(UTC)
        params = {
            "ids": [order_id for order_id, _ in triggers],
            "data": [json.dumps(data) for _, data in triggers],
            "at": at,
        }
        rows = self.session.connection().exec_driver_sql(_TRIGGER_SQL, params).all()
        return [event_of(row, "routing", at) for row in rows]

    def newest_waiting(self, limit: int) -> Sequence[Order]:
        """The newest waiting orders of every type, trailing stops with their peak now (the
        dashboard); a walk of the unfinished orders' index from the newest, LIMIT."""
        query = (
            select(Order)
            .where(Order.waiting, Order.status == "pending")
            .order_by(Order.created_at.desc())
            .limit(limit)
            .options(undefer(Order.peak_seen))
        )
        return self.session.scalars(query).all()

    def expire(self, limit: int, error: dict[str, Any]) -> list[tuple[OrderEvent, str, datetime]]:
        """Fail the waiting orders whose expiry has passed (ORDER_EXPIRED): each one's event,
        type and acceptance time."""
        at = datetime.now(UTC)
        params = {
            "limit": limit,
            "code": error["code"],
            "reason": error["message"],
            "data": Jsonb({"error": error}),
            "at": at,
        }
        rows = self.session.connection().exec_driver_sql(_EXPIRE_SQL, params).all()
        return [(event_of(row, "failed", at), row.type, row.created_at) for row in rows]


def event_of(row: Any, status: str, at: datetime) -> OrderEvent:
    return OrderEvent(
        order_id=row.order_id, seq=row.seq, status=status, attempt=row.attempt, data=row.data, at=at
    )
