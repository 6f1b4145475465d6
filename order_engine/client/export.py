"""`order-engine orders export`: every order and fill of your account, oldest first, to stdout
as CSV or NDJSON, however many.

Rows are written as they arrive. A connection cut mid-way (a restarted API, a proxy's timeout)
is resumed after the last whole row, by that row's `cursor`, over the same range (the API says
which end it used, `Export-To`), until the export ends: a CSV body that ended properly, an
NDJSON body's trailer. The rows written are every row of the range once, in order.
"""

from __future__ import annotations

import csv
import http.client
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, TextIO

from order_engine.client.api import Api, ApiError, envelope

MAX_RESUMES = 5
READ_TIMEOUT_S = 60.0


@dataclass
class _Export:
    """Where an export has got to: its query, the last whole row's cursor, what is written."""

    query: dict[str, str]
    out: TextIO
    after: str | None = None
    rows: int = 0
    header: bool = False
    ended: bool = False
    resumes: list[str] = field(default_factory=list)


def run_export(api: Api, since: str | None, until: str | None, kind: str, out: TextIO) -> int:
    """Write the export to `out`; the number of rows (ApiError if the API refuses it or cannot
    be reached, or the export is cut more than MAX_RESUMES times)."""
    query = {
        "format": kind,
        **({"from": since} if since else {}),
        **({"to": until} if until else {}),
    }
    state = _Export(query, out)
    while not state.ended:
        try:
            _read(api, state)
        except (http.client.HTTPException, OSError) as exc:
            state.resumes.append(str(exc) or type(exc).__name__)
            if len(state.resumes) > MAX_RESUMES:
                raise ApiError(
                    None, {"description": f"the export was cut {len(state.resumes)} times: {exc}"}
                ) from None
            print(f"export cut after {state.rows} rows ({exc}); resuming", file=sys.stderr)
            time.sleep(0.5 * len(state.resumes))  # a restarting API: give it a moment
    return state.rows


def _read(api: Api, state: _Export) -> None:
    """One request: write its whole rows, note the last one's cursor; `ended` once the body
    says the export is complete."""
    query = {**state.query, **({"after": state.after} if state.after else {})}
    with _open(api, "/api/orders/export?" + urllib.parse.urlencode(query)) as response:
        if "to" not in state.query and response.headers.get("Export-To"):
            state.query["to"] = response.headers["Export-To"]  # the range resumed is this one
        lines = iter(response)
        if state.query["format"] == "csv":
            header = next(lines, b"").decode()
            if not state.header:
                state.out.write(header)
                state.header = True
        for raw in lines:
            line = raw.decode()
            if not line.endswith("\n"):
                raise http.client.IncompleteRead(raw)  # a row cut short: resume before it
            if state.query["format"] == "ndjson" and json.loads(line).get("end"):
                state.ended = True
                return
            state.out.write(line)
            state.rows += 1
            state.after = _cursor(line, state.query["format"])
        # A CSV body that ended properly (its last chunk read) is the whole export; an NDJSON
        # body without its trailer was cut.
        if state.query["format"] == "csv":
            state.ended = True
        else:
            raise http.client.IncompleteRead(b"")


def _cursor(line: str, kind: str) -> str:
    if kind == "csv":
        return next(csv.reader([line]))[-1]
    return str(json.loads(line)["cursor"])


def _open(api: Api, path: str) -> Any:
    headers = {"Accept": "text/csv, application/x-ndjson"}
    if api.key:
        headers["Authorization"] = f"Bearer {api.key}"
    request = urllib.request.Request(api.url + path, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        raise ApiError(error.code, envelope(error.read(), error.code)) from None
