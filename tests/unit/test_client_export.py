"""`order-engine orders export` against a stand-in API on loopback that cuts its answers short:
the client resumes after the last whole row, with the same range, and writes every row once."""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from order_engine.client import export as client_export
from order_engine.client.api import Api, ApiError
from order_engine.client.export import run_export

ROWS = [f"id-{n},{n}_{n:032x}" for n in range(7)]  # orderId, cursor
HEADER = "orderId,cursor\r\n"
TO = "2026-12-07T00:00:00.000Z"


class StandIn(BaseHTTPRequestHandler):
    """Answers exports of ROWS after `after`; cuts the first `cuts` answers after two rows (a
    chunked body without its last chunk, the connection closed)."""

    protocol_version = "HTTP/1.1"
    cuts = 0
    queries: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        type(self).queries.append(query)
        if query.get("format") == "xlsx":
            self._refuse()
            return
        after = query.get("after")
        start = next((i + 1 for i, row in enumerate(ROWS) if row.endswith(after or "-")), 0)
        rows = ROWS[start:]
        cut = type(self).cuts > 0
        if cut:
            type(self).cuts -= 1
            rows = rows[:2]
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Export-To", query.get("to", TO))
        self.end_headers()
        for chunk in self._body(query["format"], rows, last=not cut):
            data = chunk.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        if cut:
            self.wfile.write(b"5\r\npartial")  # half a row, then the connection goes
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _body(self, kind: str, rows: list[str], last: bool) -> Iterator[str]:
        if kind == "csv":
            yield HEADER
            yield from (row + "\r\n" for row in rows)
            return
        for row in rows:
            order_id, cursor = row.split(",")
            yield json.dumps({"orderId": order_id, "cursor": cursor}) + "\n"
        if last:
            yield json.dumps({"end": True, "rows": len(rows), "to": TO}) + "\n"

    def _refuse(self) -> None:
        body = json.dumps({"code": 422, "description": "Invalid query."}).encode()
        self.send_response(422)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[Api]:
    StandIn.cuts, StandIn.queries = 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Api(f"http://127.0.0.1:{server.server_address[1]}", "key")
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_an_export_cut_twice_is_resumed_after_its_last_whole_row(api, kind, monkeypatch):
    monkeypatch.setattr(client_export.time, "sleep", lambda _s: None)
    StandIn.cuts = 2
    out = io.StringIO()
    assert run_export(api, "2026-12-01", None, kind, out) == len(ROWS)
    if kind == "csv":
        assert out.getvalue() == HEADER + "".join(row + "\r\n" for row in ROWS)
    else:
        written = [json.loads(line)["orderId"] for line in out.getvalue().splitlines()]
        assert written == [row.split(",")[0] for row in ROWS]  # no trailer among the rows
    first, *resumed = StandIn.queries
    assert first == {"format": kind, "from": "2026-12-01"}
    assert [q.get("after") for q in resumed] == [ROWS[1].split(",")[1], ROWS[3].split(",")[1]]
    assert all(q["to"] == TO for q in resumed)  # the range the first answer named


def test_an_export_cut_too_often_or_refused_says_why(api, monkeypatch):
    monkeypatch.setattr(client_export.time, "sleep", lambda _s: None)
    StandIn.cuts = 100
    with pytest.raises(ApiError, match="cut 6 times"):
        run_export(api, None, None, "csv", io.StringIO())
    with pytest.raises(ApiError) as refused:
        run_export(api, None, None, "xlsx", io.StringIO())
    assert refused.value.status == 422
