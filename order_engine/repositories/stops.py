"""Data access for the orders that fire when the market falls to them: stops, a bracket's
stop-loss, trailing stops, and the marks of the quotes trailing stops follow. Never commits.

Each statement reads the partial indexes on waiting orders of these types, so the work grows
with the pairs and size classes that have such orders and with the orders near their trigger,
not with the book:

- `ix_orders_waiting_stop` (pair, size class, stop_price): the classes that have orders (a skip
  scan: one index descent per class, not a read of every entry), and per class the orders whose
  stop_price is at or above the least quote any order of the class can get;
- `ix_orders_trailing_trail` (pair, class, trail_bps, trail_since): per mark of a class, the
  trailing stops that followed it with a trail the market's drop from it reaches;
- `ix_orders_trailing_since` (pair, class, trail_since): a class's newest start.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from order_engine.models import OrderEvent
from order_engine.repositories.trigger import CANDIDATE_COLUMNS, Candidate, event_of

WAITING = "waiting AND status = 'pending'"
STOPPED = f"{WAITING} AND stop_price IS NOT NULL"
STARTED = f"{WAITING} AND trail_since IS NOT NULL"
SAME_CLASS = (
    "o.token_in = {0}.token_in AND o.token_out = {0}.token_out AND o.size_class = {0}.size_class"
)


@dataclass(frozen=True)
class Mark:
    """The highest quote of a class seen at or after `since` (`trailing_peaks`)."""

    since: datetime
    peak: Decimal


@dataclass(frozen=True)
class SizeClass:
    """A pair and size class with orders on the stop index: its newest trailing start and its
    marks, oldest first (their peaks fall as they get newer)."""

    token_in: str
    token_out: str
    size_class: int
    last_start: datetime | None
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class Floor:
    """A class's orders on the stop index that may fire: stop_price at or above `bound`."""

    token_in: str
    token_out: str
    size_class: int
    bound: Decimal


@dataclass(frozen=True)
class Drop:
    """A class's trailing stops that started after `after` and at or before `until` (they
    follow the mark of `until`) with a trail of at most `trail_bps`."""

    token_in: str
    token_out: str
    size_class: int
    after: datetime | None
    until: datetime
    trail_bps: int


_CLASSES_SQL = f"""
WITH RECURSIVE classes AS (
    (SELECT token_in, token_out, size_class FROM orders WHERE {STOPPED}
      ORDER BY token_in, token_out, size_class LIMIT 1)
    UNION ALL
    SELECT n.token_in, n.token_out, n.size_class FROM classes AS c CROSS JOIN LATERAL (
        SELECT token_in, token_out, size_class FROM orders
         WHERE {STOPPED}
           AND (token_in, token_out, size_class) > (c.token_in, c.token_out, c.size_class)
         ORDER BY token_in, token_out, size_class LIMIT 1
    ) AS n
)
SELECT c.token_in, c.token_out, c.size_class,
       (SELECT max(o.trail_since) FROM orders AS o WHERE {STARTED} AND {SAME_CLASS.format("c")}),
       (SELECT array_agg(m.since ORDER BY m.since) FROM trailing_peaks AS m
         WHERE m.token_in = c.token_in AND m.token_out = c.token_out
           AND m.size_class = c.size_class),
       (SELECT array_agg(m.peak ORDER BY m.since) FROM trailing_peaks AS m
         WHERE m.token_in = c.token_in AND m.token_out = c.token_out
           AND m.size_class = c.size_class)
  FROM classes AS c
"""

_CANDIDATES_SQL = f"""
SELECT o.* FROM unnest(%(f_in)s::text[], %(f_out)s::text[], %(f_k)s::smallint[],
                       %(f_bound)s::numeric[]) AS f(tin, tout, k, bound)
 CROSS JOIN LATERAL (
        SELECT {CANDIDATE_COLUMNS} FROM orders
         WHERE {STOPPED} AND token_in = f.tin AND token_out = f.tout AND size_class = f.k
           AND stop_price >= f.bound
         ORDER BY stop_price DESC LIMIT %(per_class)s
       ) AS o
UNION ALL
SELECT o.* FROM unnest(%(d_in)s::text[], %(d_out)s::text[], %(d_k)s::smallint[],
                       %(d_after)s::timestamptz[], %(d_until)s::timestamptz[],
                       %(d_bps)s::integer[]) AS d(tin, tout, k, after, until, bps)
 CROSS JOIN LATERAL (
        SELECT {CANDIDATE_COLUMNS} FROM orders
         WHERE {STARTED} AND token_in = d.tin AND token_out = d.tout AND size_class = d.k
           AND trail_bps <= d.bps AND trail_since > d.after AND trail_since <= d.until
         ORDER BY trail_bps LIMIT %(per_class)s
       ) AS o
"""

# A trailing stop reaches its activation price: it starts trailing from this evaluation, its
# class's quote its peak, off the limit index (no trigger_price) and onto the stop index at its
# level, with a `pending` event saying so. Compare-and-set on a waiting order not yet started,
# so a cancel, a trigger or another scheduler's activation of the same row wins or loses whole.
_ACTIVATE_SQL = """
WITH moved AS (
    UPDATE orders AS o
       SET trail_since = %(since)s, peak_price = t.peak, stop_price = t.level,
           trigger_price = NULL, last_seq = o.last_seq + 1, updated_at = now()
      FROM unnest(%(ids)s::uuid[], %(peaks)s::numeric[], %(levels)s::numeric[],
                  %(data)s::text[]) AS t(id, peak, level, data)
     WHERE o.id = t.id AND o.waiting AND o.status = 'pending' AND o.trail_since IS NULL
 RETURNING o.id, o.last_seq, o.attempts, t.data
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, last_seq, 'pending', attempts, data::jsonb, %(at)s FROM moved
RETURNING order_id, seq, attempt, data
"""

# New marks, one per class, at this evaluation's instant. A mark it makes useless is deleted:
# one at or before it with a peak no higher (every order that followed that one follows this
# one too), and any mark no waiting trailing stop started at or before (none follows it, and
# every order to come starts later). Two schedulers writing at one instant keep the higher.
_MARK_SQL = f"""
WITH p AS (
    SELECT * FROM unnest(%(ins)s::text[], %(outs)s::text[], %(ks)s::smallint[],
                         %(peaks)s::numeric[]) AS p(tin, tout, k, peak)
), dropped AS (
    DELETE FROM trailing_peaks AS m
     WHERE EXISTS (SELECT 1 FROM p WHERE p.tin = m.token_in AND p.tout = m.token_out
                      AND p.k = m.size_class AND m.peak <= p.peak AND m.since <= %(since)s)
        OR NOT EXISTS (SELECT 1 FROM orders AS o
                        WHERE {STARTED} AND {SAME_CLASS.format("m")}
                          AND o.trail_since <= m.since)
)
INSERT INTO trailing_peaks (token_in, token_out, size_class, since, peak)
SELECT tin, tout, k, %(since)s, peak FROM p
    ON CONFLICT (token_in, token_out, size_class, since)
    DO UPDATE SET peak = GREATEST(trailing_peaks.peak, EXCLUDED.peak)
"""


class StopRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def classes(self) -> list[SizeClass]:
        """Every pair and size class that has orders on the stop index, with its trailing
        stops' newest start and its marks. One statement; one index descent per class."""
        rows = self.session.connection().exec_driver_sql(_CLASSES_SQL).all()
        return [
            SizeClass(
                tin,
                tout,
                k,
                last_start,
                tuple(Mark(s, p) for s, p in zip(since or (), peaks or (), strict=True)),
            )
            for tin, tout, k, last_start, since, peaks in rows
        ]

    def candidates(
        self, floors: Sequence[Floor], drops: Sequence[Drop], per_class: int
    ) -> list[Candidate]:
        """The orders on the stop index at or above their class's floor, and the trailing
        stops each drop reaches (an order may come twice). One round trip."""
        if not floors and not drops:
            return []
        never = datetime.min.replace(tzinfo=UTC)
        params = {
            "f_in": [f.token_in for f in floors],
            "f_out": [f.token_out for f in floors],
            "f_k": [f.size_class for f in floors],
            "f_bound": [f.bound for f in floors],
            "d_in": [d.token_in for d in drops],
            "d_out": [d.token_out for d in drops],
            "d_k": [d.size_class for d in drops],
            "d_after": [d.after or never for d in drops],
            "d_until": [d.until for d in drops],
            "d_bps": [d.trail_bps for d in drops],
            "per_class": per_class,
        }
        rows = self.session.connection().exec_driver_sql(_CANDIDATES_SQL, params).all()
        return [Candidate(*row) for row in rows]

    def activate(
        self, since: datetime, started: Sequence[tuple[uuid.UUID, Decimal, Decimal, dict[str, Any]]]
    ) -> list[OrderEvent]:
        """Start these trailing stops (id, peak, level, event data) at `since`; the events of
        those that were still waiting for their activation price."""
        if not started:
            return []
        at = datetime.now(UTC)
        params = {
            "since": since,
            "ids": [order_id for order_id, *_ in started],
            "peaks": [peak for _, peak, _, _ in started],
            "levels": [level for _, _, level, _ in started],
            "data": [json.dumps(data) for *_, data in started],
            "at": at,
        }
        rows = self.session.connection().exec_driver_sql(_ACTIVATE_SQL, params).all()
        return [event_of(row, "pending", at) for row in rows]

    def mark(self, since: datetime, peaks: Sequence[tuple[str, str, int, Decimal]]) -> None:
        """Write a mark per class (pair, class, peak) at `since`, deleting those it makes
        useless and those no waiting order follows any more."""
        if not peaks:
            return
        params = {
            "ins": [tin for tin, _, _, _ in peaks],
            "outs": [tout for _, tout, _, _ in peaks],
            "ks": [k for _, _, k, _ in peaks],
            "peaks": [peak for *_, peak in peaks],
            "since": since,
        }
        self.session.connection().exec_driver_sql(_MARK_SQL, params)
