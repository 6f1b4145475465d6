"""Data access for the export of an account's orders: keyset pages in time order. Never
commits.

A page is one statement over `ix_orders_account_created_at` (account, created_at, id): a range
scan that starts after the previous page's last row, so every page costs the same however deep
into the export it is, and no transaction or server-side cursor stays open between pages. The
rows come back as text, formatted by PostgreSQL (amounts without trailing zeros, timestamps in
the API's shape), so the API process only writes them out: at a million rows, formatting in
Python was most of the export's CPU.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from order_engine.infra.db import session_statement

_TIMESTAMP = '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\''

# One page: COLUMNS as text (sliceIndex an integer), then the row's keyset position.
# `filledIn`: what was sold, a confirmed swap's amount or a TWAP parent's slices' so far. The
# cursor is the row's creation time in microseconds since the epoch and its id.
_PAGE_SQL = f"""
SELECT id::text, parent_id::text, slice_index, type, status, token_in, token_out,
       trim_scale(amount_in)::text,
       CASE WHEN type = 'twap' THEN trim_scale(coalesce(amount_in_filled, 0))::text
            WHEN status = 'confirmed' THEN trim_scale(amount_in)::text
            ELSE '0' END,
       trim_scale(amount_out)::text, trim_scale(executed_price)::text, dex,
       (route -> 'legs')::text, tx_hash,
       -- fees, landing: here, once orders record them (domain/export.py's COLUMNS too)
       client_order_id, failure_code,
       to_char(created_at AT TIME ZONE 'UTC', {_TIMESTAMP}),
       to_char(updated_at AT TIME ZONE 'UTC', {_TIMESTAMP}),
       (extract(epoch FROM created_at) * 1000000)::bigint::text || '_'
           || replace(id::text, '-', ''),
       created_at, id
  FROM orders AS o
 WHERE o.account_id = %(account)s AND o.created_at >= %(from)s AND o.created_at < %(to)s
   AND (o.created_at, o.id) > (%(after_at)s, %(after_id)s)
 ORDER BY o.created_at, o.id
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Page:
    """Rows of text (COLUMNS, in order), and where the next page starts (None: no more)."""

    rows: Sequence[tuple[Any, ...]]
    last: tuple[datetime, uuid.UUID] | None


class ExportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(
        self,
        account_id: uuid.UUID,
        start: datetime,
        end: datetime,
        after: tuple[datetime, uuid.UUID],
        limit: int,
    ) -> Page:
        """The account's orders created in [start, end) after the keyset position `after`,
        oldest first, at most `limit`."""
        params = {
            "account": account_id,
            "from": start,
            "to": end,
            "after_at": after[0],
            "after_id": after[1],
            "limit": limit,
        }
        rows = session_statement(self.session, _PAGE_SQL, params)
        last = (rows[-1][-2], rows[-1][-1]) if len(rows) == limit else None
        return Page([row[:-2] for row in rows], last)
