"""Data access for TWAP orders: running parents, their children, each step of a schedule.
Takes a Session and never commits.

Exactly once rests on two things here. A parent moves by compare-and-set on what the scheduler
saw (`status = 'pending'`, its `next_slice` and `slices_finished`): of two schedulers, or a
scheduler and a cancel, one moves it and the other matches nothing, and a step's children are
inserted only in the transaction whose compare-and-set matched. And a slice is one row, unique
on (parent_id, slice_index), so no slice can be created twice whatever runs when.

Every statement reads a range of a partial or unique index: the running parents
(`ix_orders_twap_running`) and one parent's children (`uq_orders_parent_id_slice_index`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.orm import Session

from order_engine.domain.twap import ChildFill
from order_engine.infra.db import session_statement
from order_engine.models import Order, OrderEvent


@dataclass(frozen=True)
class Parent:
    """A running TWAP parent as the scheduler reads it, with its account's in-flight cap."""

    id: uuid.UUID
    account_id: uuid.UUID
    token_in: str
    token_out: str
    amount_in: Decimal
    slippage_bps: int
    limit_price: Decimal | None
    slices: int
    interval_s: int
    next_slice: int
    slices_finished: int
    created_at: datetime
    in_flight_cap: int  # 0: none
    # Its landing options, which its children inherit (NULL: the settings').
    priority_fee_micro_lamports: int | None = None
    max_fee_lamports: int | None = None
    mev_protection: bool | None = None


@dataclass(frozen=True)
class ParentStep:
    """What one step of a parent writes: its columns, its event, and whether it ends."""

    parent: Parent
    status: str
    next_slice: int
    slices_finished: int
    filled_in: Decimal
    filled_out: Decimal
    price: Decimal | None
    data: dict[str, Any]
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewChild:
    """A slice to create: its row's own values and its first event's data."""

    id: uuid.UUID
    slice_index: int
    amount_in: Decimal
    due: datetime
    data: dict[str, Any]


# The running parents that have something to do at `now`: a slice due by `horizon`, a child
# finished since the parent last said, or nothing left to start and every child finished.
_ACTIONABLE_SQL = """
SELECT p.id, p.account_id, p.token_in, p.token_out, p.amount_in, p.slippage_bps,
       p.limit_price, p.slices, p.interval_s, coalesce(p.next_slice, 0),
       coalesce(p.slices_finished, 0), p.created_at,
       coalesce(a.max_orders_in_flight, %(default_cap)s),
       p.priority_fee_micro_lamports, p.max_fee_lamports, p.mev_protection
  FROM orders AS p
  JOIN accounts AS a ON a.id = p.account_id
 CROSS JOIN LATERAL (
       SELECT count(*) AS started,
              count(*) FILTER (WHERE c.status IN ('confirmed', 'failed', 'cancelled')) AS finished
         FROM orders AS c
        WHERE c.parent_id = p.id
       ) AS children
 WHERE p.type = 'twap' AND p.status = 'pending'
   AND (%(only)s::uuid IS NULL OR p.id = %(only)s::uuid)
   AND ((coalesce(p.next_slice, 0) < p.slices
         AND p.created_at + make_interval(secs => coalesce(p.next_slice, 0) * p.interval_s)
             <= %(horizon)s)
        OR children.finished <> coalesce(p.slices_finished, 0)
        OR (coalesce(p.next_slice, 0) >= p.slices AND children.finished = children.started))
 ORDER BY p.created_at
 LIMIT %(limit)s
"""

_ANY_RUNNING_SQL = "SELECT EXISTS (SELECT 1 FROM orders WHERE type = 'twap' AND status = 'pending')"

# The running parents and their children in flight (the dashboard): a range of the running
# parents' index, each parent's children a range of theirs.
_RUNNING_SQL = """
SELECT count(*), coalesce(sum((
       SELECT count(*) FROM orders AS c
        WHERE c.parent_id = p.id AND c.status NOT IN ('confirmed', 'failed', 'cancelled'))), 0)
  FROM orders AS p WHERE p.type = 'twap' AND p.status = 'pending'
"""

_CHILDREN_SQL = """
SELECT parent_id, slice_index, status, amount_in, amount_out
  FROM orders WHERE parent_id = ANY(%(parents)s::uuid[])
 ORDER BY parent_id, slice_index
"""

# One step of a parent, compare-and-set on what the scheduler saw, with its event.
_STEP_SQL = """
WITH moved AS (
    UPDATE orders
       SET status = %(status)s, waiting = %(waiting)s,
           next_slice = %(next_slice)s, slices_finished = %(finished)s,
           amount_in_filled = %(filled_in)s, amount_out = %(filled_out)s,
           executed_price = %(price)s, failure_code = %(code)s, failure_reason = %(reason)s,
           failure_retryable = %(retryable)s,
           last_seq = last_seq + 1, updated_at = %(at)s
     WHERE id = %(id)s AND type = 'twap' AND status = 'pending'
       AND coalesce(next_slice, 0) = %(seen_next)s
       AND coalesce(slices_finished, 0) = %(seen_finished)s
 RETURNING id, last_seq, attempts
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, last_seq, %(status)s, attempts, %(data)s, %(at)s FROM moved
RETURNING order_id, seq, attempt, data
"""

# A step's children, each a market order with its first `pending` event, sent to the queue for
# when it is due (`dispatched_at`: the reconciler counts a lost dispatch from there). A child of
# a parent with a limit carries it (the executor never fills it below) as its trigger price,
# should the market leave it before its swap is built, and expires with its parent's schedule.
_CHILDREN_INSERT_SQL = """
WITH b AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(indexes)s::integer[], %(amounts)s::numeric[],
                         %(due)s::timestamptz[], %(data)s::text[])
           AS b(id, slice_index, amount_in, due, data)
), child AS (
    INSERT INTO orders (
        id, account_id, type, status, token_in, token_out, amount_in, slippage_bps,
        last_seq, attempts, deliveries, created_at, updated_at, dispatched_at,
        limit_price, trigger_price, expires_at, waiting, parent_id, slice_index,
        priority_fee_micro_lamports, max_fee_lamports, mev_protection
    )
    SELECT b.id, %(account)s, 'market', 'pending', %(token_in)s, %(token_out)s, b.amount_in,
           %(slippage)s, 1, 0, 0, %(at)s, %(at)s, greatest(b.due, %(at)s),
           %(limit)s, %(limit)s, %(expires)s, false, %(parent)s, b.slice_index,
           p.priority_fee_micro_lamports, p.max_fee_lamports, p.mev_protection
      FROM b JOIN orders AS p ON p.id = %(parent)s ORDER BY b.slice_index
        ON CONFLICT (parent_id, slice_index) DO NOTHING
 RETURNING id
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT b.id, 1, 'pending', 0, b.data::jsonb, %(at)s FROM child JOIN b ON b.id = child.id
RETURNING order_id
"""

# A cancelled parent's children whose swap is not built yet: cancelled as a client's cancel
# would (the executor's next step needs them `routing`, and stops); the others finish.
_CANCEL_CHILDREN_SQL = """
WITH moved AS (
    UPDATE orders
       SET status = 'cancelled', last_seq = last_seq + 1, lease_owner = NULL,
           lease_until = NULL, updated_at = %(at)s
     WHERE parent_id = %(parent)s AND status IN ('pending', 'routing') AND tx_hash IS NULL
 RETURNING id, last_seq, attempts, type, created_at
), inserted AS (
    INSERT INTO order_events (order_id, seq, status, attempt, data, at)
    SELECT id, last_seq, 'cancelled', attempts, %(data)s, %(at)s FROM moved
    RETURNING order_id, seq, attempt, data
)
SELECT inserted.*, moved.type, moved.created_at
  FROM inserted JOIN moved ON moved.id = inserted.order_id
"""

# The account's orders in flight (not waiting, unfinished), counted up to `up_to` on the index
# intake counts them on (ix_orders_account_unfinished_waiting).
_IN_FLIGHT_SQL = (
    "SELECT count(*) FROM (SELECT 1 FROM orders WHERE account_id = %(account)s AND NOT waiting"
    " AND status NOT IN ('confirmed', 'failed', 'cancelled') LIMIT %(up_to)s) AS in_flight"
)

_LOCK_ACCOUNT_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%(account)s::text, 0))"


class TwapRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def any_running(self) -> bool:
        """Whether any parent runs: one look at the running parents' partial index."""
        [(found,)] = session_statement(self.session, _ANY_RUNNING_SQL, {})
        return bool(found)

    def running(self) -> tuple[int, int]:
        """How many parents run, and how many of their children are in flight."""
        [(parents, children)] = session_statement(self.session, _RUNNING_SQL, {})
        return int(parents), int(children)

    def actionable(
        self, horizon: datetime, default_cap: int, limit: int, only: uuid.UUID | None = None
    ) -> list[tuple[Parent, list[ChildFill]]]:
        """The running parents with something to do (a slice due by `horizon`, a child that
        finished, or their end), oldest first, each with its children (`only`: that one)."""
        params = {"horizon": horizon, "default_cap": default_cap, "limit": limit, "only": only}
        parents = [Parent(*row) for row in session_statement(self.session, _ACTIONABLE_SQL, params)]
        if not parents:
            return []
        rows = session_statement(self.session, _CHILDREN_SQL, {"parents": [p.id for p in parents]})
        children: dict[uuid.UUID, list[ChildFill]] = {p.id: [] for p in parents}
        for parent_id, index, status, amount_in, amount_out in rows:
            children[parent_id].append(ChildFill(index, status, amount_in, amount_out))
        return [(parent, children[parent.id]) for parent in parents]

    def in_flight(self, account_id: uuid.UUID, up_to: int) -> int:
        """The account's orders in flight, counted up to `up_to`, once its intake is held: a
        submission of the account near its cap queues behind this (OrderRepository.lock_account
        takes the same lock) until the step's children are committed and counted."""
        session_statement(self.session, _LOCK_ACCOUNT_SQL, {"account": account_id})
        [(count,)] = session_statement(
            self.session, _IN_FLIGHT_SQL, {"account": account_id, "up_to": up_to}
        )
        return int(count)

    def step(self, step: ParentStep, at: datetime) -> OrderEvent | None:
        """Move the parent as `step` says if it is still as the scheduler saw it; its event, or
        None when something else moved it first (nothing written)."""
        error = step.error or {}
        params = {
            "id": step.parent.id,
            "status": step.status,
            "waiting": step.status == "pending",
            "next_slice": step.next_slice,
            "finished": step.slices_finished,
            "filled_in": step.filled_in,
            "filled_out": step.filled_out,
            "price": step.price,
            "code": error.get("code"),
            "reason": error.get("message"),
            "retryable": False if error else None,
            "seen_next": step.parent.next_slice,
            "seen_finished": step.parent.slices_finished,
            "data": Jsonb(step.data),
            "at": at,
        }
        rows = session_statement(self.session, _STEP_SQL, params)
        if not rows:
            return None
        [(order_id, seq, attempt, data)] = rows
        return OrderEvent(
            order_id=order_id, seq=seq, status=step.status, attempt=attempt, data=data, at=at
        )

    def add_children(
        self,
        parent: Parent,
        children: Sequence[NewChild],
        expires_at: datetime | None,
        at: datetime,
    ) -> list[uuid.UUID]:
        """Insert a step's children with their first events; the ids inserted (a slice that
        exists already is not inserted again)."""
        if not children:
            return []
        params = {
            "ids": [c.id for c in children],
            "indexes": [c.slice_index for c in children],
            "amounts": [c.amount_in for c in children],
            "due": [c.due for c in children],
            "data": [json.dumps(c.data, separators=(",", ":")) for c in children],
            "account": parent.account_id,
            "token_in": parent.token_in,
            "token_out": parent.token_out,
            "slippage": parent.slippage_bps,
            "limit": parent.limit_price,
            "expires": expires_at if parent.limit_price is not None else None,
            "parent": parent.id,
            "at": at,
        }
        return [row[0] for row in session_statement(self.session, _CHILDREN_INSERT_SQL, params)]

    def cancel_children(
        self, parent_id: uuid.UUID, data: dict[str, Any], at: datetime
    ) -> list[tuple[OrderEvent, str, datetime]]:
        """Cancel the parent's children whose swap is not built: each one's event, type and
        acceptance time (for the metrics)."""
        params = {"parent": parent_id, "data": Jsonb(data), "at": at}
        rows = session_statement(self.session, _CANCEL_CHILDREN_SQL, params)
        return [
            (
                OrderEvent(
                    order_id=order_id,
                    seq=seq,
                    status="cancelled",
                    attempt=attempt,
                    data=data_,
                    at=at,
                ),
                order_type,
                created_at,
            )
            for order_id, seq, attempt, data_, order_type, created_at in rows
        ]

    def children(self, parent_id: uuid.UUID) -> Sequence[Order]:
        """A parent's children, by slice."""
        return self.session.scalars(
            select(Order).where(Order.parent_id == parent_id).order_by(Order.slice_index)
        ).all()
