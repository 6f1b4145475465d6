"""`GET /api/orders/export`: the caller's account's orders and fills, streamed as CSV or NDJSON.

The body is written a page at a time as the pages are read (`ExportService.pages`), by a
generator Flask streams: the API holds one page, whatever the export's size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request, stream_with_context
from marshmallow import ValidationError

from order_engine.api.access import current_principal, requires
from order_engine.domain.time import format_timestamp
from order_engine.errors import UnprocessableError, field_errors
from order_engine.schemas import export as shapes
from order_engine.services.export import EPOCH, export_service

bp = Blueprint("export", __name__, url_prefix="/api/orders")
query_schema = shapes.ExportQuerySchema()


@bp.get("/export")
@requires("orders:read")
def export_orders() -> Response:
    """Every order of the caller's account created in a range, with its fill, oldest first.
    ---
    get:
      operationId: exportOrders
      summary: Export your orders and fills (CSV or NDJSON), streamed
      description: >-
        Streams every order of the key's account (an admin key's too: its own
        account's) created in [from, to), oldest first: ids (a TWAP slice's
        parentId and sliceIndex), type, status, pair, amountIn, filledIn,
        amountOut, averagePrice, venue, route (the legs, JSON), txHash,
        clientOrderId, errorCode, createdAt, updatedAt and cursor. The body is
        written as it is read, in constant memory on the server. To resume
        after a cut, ask again with the same from and to (the Export-To
        header says which to was used) and after=<the cursor of the last row
        received>. A CSV body is whole when its HTTP body ended properly; an
        NDJSON body ends with {"end": true, "rows": n, "to": ...}.
      parameters:
        - in: query
          schema: ExportQuerySchema
      responses:
        "200":
          description: The rows, as they are read
          headers:
            Export-To:
              description: the range's end (ISO 8601); pass it as `to` to resume
              schema: {type: string, format: date-time}
          content:
            text/csv:
              schema: {type: string}
            application/x-ndjson:
              schema: {type: string}
        "401": Unauthorized
        "403": Forbidden
        "422": Unprocessable
        "429": TooManyRequests
    """
    query = _query()
    end = query.get("to") or datetime.now(UTC)
    start = query.get("from_") or EPOCH
    kind = query["format"]
    pages = export_service().pages(current_principal().account_id, start, end, query.get("after"))
    # The first page is read before the answer starts: a database that is down is then a 503,
    # not a 200 cut short.
    first = next(pages, None)
    pages = itertools.chain([] if first is None else [first], pages)
    body = _csv(pages) if kind == "csv" else _ndjson(pages, end)
    suffix = f"{format_timestamp(start)[:10]}-{format_timestamp(end)[:10]}"
    headers = {
        "Export-To": format_timestamp(end),
        "Content-Disposition": f'attachment; filename="orders-{suffix}.{kind}"',
        "Cache-Control": "no-store",
    }
    return Response(
        stream_with_context(body), content_type=shapes.CONTENT_TYPES[kind], headers=headers
    )


def _query() -> dict[str, Any]:
    args = {name: values[-1] for name, values in request.args.lists()}
    try:
        return query_schema.load(args)
    except ValidationError as exc:
        raise UnprocessableError("Invalid query.", errors=field_errors(exc.messages)) from None


def _csv(pages: Iterable[Sequence[tuple[Any, ...]]]) -> Iterator[str]:
    yield shapes.csv_header()
    for rows in pages:
        yield shapes.csv_chunk(rows)


def _ndjson(pages: Iterable[Sequence[tuple[Any, ...]]], end: datetime) -> Iterator[str]:
    count = 0
    for rows in pages:
        count += len(rows)
        yield shapes.ndjson_chunk(rows)
    yield shapes.ndjson_trailer(count, end)
