"""The export of an account's orders: its query string, and its rows as CSV or NDJSON lines.

A row's columns are `COLUMNS` (domain/export.py), each already text; the last, `cursor`,
resumes the export after that row (`after=<cursor>`). An NDJSON export ends with a trailer line
`{"end": true, "rows": <n>, "to": <the range's end>}`, so a client tells a whole export from one
cut short; a CSV export is whole when its HTTP body ended properly (the last chunk of its
chunked transfer), as every HTTP client checks.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from order_engine.domain.export import COLUMNS
from order_engine.domain.time import format_timestamp

FORMATS = ("csv", "ndjson")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8; header=present", "ndjson": "application/x-ndjson"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,19})_([0-9a-f]{32})")
_ROUTE = COLUMNS.index("route")


class Moment(fields.Field):
    """An instant: ISO 8601 with a time zone, or a date (its midnight, UTC)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError("Not a date or time.")
        try:
            if len(value) == 10:
                moment = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            else:
                moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                "Must be a date (2026-12-01) or an ISO 8601 time with a zone "
                "(2026-12-01T09:30:00Z)."
            ) from None
        if moment.tzinfo is None:
            raise ValidationError("A time needs its zone (Z or +hh:mm).")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Must be between 1970 and 9999.") from None
        if not _EPOCH <= moment < _LAST:
            raise ValidationError("Must be between 1970 and 9999.")
        return moment


class ExportCursor(fields.Field):
    """The `cursor` of an exported row: the row's position (creation time, id)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[datetime, uuid.UUID]:
        match = _CURSOR.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError("Not a cursor from an export (the `cursor` of a row).")
        try:
            moment = _EPOCH + timedelta(microseconds=int(match.group(1)))
        except OverflowError:
            raise ValidationError("Not a cursor from an export (the `cursor` of a row).") from None
        return moment, uuid.UUID(match.group(2))


class ExportQuerySchema(Schema):
    """Query string of GET /api/orders/export."""

    class Meta:
        unknown = RAISE

    from_ = Moment(
        data_key="from",
        metadata={
            "description": "Orders created at or after this instant (a date: its midnight UTC; "
            "default: the first order)."
        },
    )
    to = Moment(
        metadata={
            "description": "Orders created before this instant (default: when the export "
            "starts, given back as the `Export-To` header: pass it when resuming)."
        }
    )
    format = fields.String(
        load_default="csv",
        validate=validate.OneOf(FORMATS),
        metadata={"description": "csv (a header line, then a row per order) or ndjson"},
    )
    after = ExportCursor(
        metadata={"description": "Resume after the row with this `cursor`, same range."}
    )

    @validates_schema
    def check_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        start, end = data.get("from_"), data.get("to")
        if start is not None and end is not None and end <= start:
            raise ValidationError({"to": ["Must be after `from`."]})


def csv_header() -> str:
    return ",".join(COLUMNS) + "\r\n"


def csv_chunk(rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows as CSV lines (RFC 4180: CRLF, quoted where a value needs it)."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def ndjson_chunk(rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows as JSON objects, a line each; the route as JSON, not text."""
    lines = []
    for row in rows:
        line = dict(zip(COLUMNS, row, strict=True))
        if row[_ROUTE] is not None:
            line["route"] = json.loads(row[_ROUTE])
        lines.append(json.dumps(line, separators=(",", ":")))
    lines.append("")
    return "\n".join(lines)


def ndjson_trailer(rows: int, end: datetime) -> str:
    return json.dumps({"end": True, "rows": rows, "to": format_timestamp(end)}) + "\n"
