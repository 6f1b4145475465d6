"""HTTP load generators and the minimal client they use. They run in their own processes (see
`bench.procs`), never in the process that samples the servers, and every loop is bounded by a
count and a deadline.

Open loop: request i is due at start + i/rate whatever happened to earlier ones, and its
latency is measured from that due time, so a slow server shows as latency instead of silently
lowering the offered rate (the coordinated-omission trap of closed-loop tools like wrk).
Closed loop: `concurrency` clients send back to back for a duration; its rate is the
saturation throughput.

The client is HTTP/1.1 keep-alive on asyncio streams: the load generator shares the cores with
the servers it measures, so a request is one write and two reads on a kept-alive socket, with
no per-request client object. It speaks only what the benchmark needs (a JSON body, a
Content-Length reply).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"  # this machine's loopback, unless a spec names a host


@dataclass
class Response:
    status: int
    body: bytes


# The bench's API key (bench/stack.py creates it and exports BENCH_API_KEY to its children).
AUTH = (
    f"Authorization: Bearer {os.environ['BENCH_API_KEY']}\r\n"
    if os.environ.get("BENCH_API_KEY")
    else ""
)


class Connection:
    """One kept-alive connection; `reusable` turns false when the server asks to close."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.port, self.host = port, host
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reusable = True
        self.used = False

    async def request(self, method: str, path: str, body: bytes = b"") -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{AUTH}\r\n"
        )
        self.writer.write(head.encode("ascii") + body)
        self.used = True
        raw_head = await self.reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_head(raw_head)
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        self.reusable = headers.get("connection", "").lower() != "close"
        return Response(status, payload)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class NotSent(Exception):
    """No connection came free in time: the request never left the client."""


class Pool:
    """At most `size` connections; a request waits for a free one (that wait is latency)."""

    def __init__(self, port: int, size: int, host: str = HOST) -> None:
        self.port, self.host = port, host
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []

    async def request(
        self, method: str, path: str, body: bytes = b"", *, wait_s: float | None, timeout_s: float
    ) -> Response:
        """Send once a connection is free (within `wait_s`), then wait up to `timeout_s`.

        A request that was never sent costs the server nothing; one abandoned after sending
        would still be served (gunicorn reads it from the socket) and skew what follows.
        """
        try:
            await asyncio.wait_for(self._slots.acquire(), wait_s)
        except TimeoutError:
            raise NotSent from None
        conn = self._idle.pop() if self._idle else Connection(self.port, self.host)
        try:
            response = await asyncio.wait_for(self._send(conn, method, path, body), timeout_s)
        except BaseException:
            conn.close()
            self._slots.release()
            raise
        if conn.reusable:
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()
        return response

    async def _send(self, conn: Connection, method: str, path: str, body: bytes) -> Response:
        reused = conn.used
        try:
            return await conn.request(method, path, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # The server closed an idle kept-alive socket (gunicorn --keep-alive): the request
            # never reached it, so sending it once more on a fresh connection is safe.
            conn.close()
            return await conn.request(method, path, body)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


ENGINE_PATH = "/api/orders/execute"
BASELINE_PATH = "/bench/baseline"
REQUEST_TIMEOUT_S = 30.0
SEND_GRACE_S = 2.0  # a request still waiting for a connection this long after the window: unsent
START_DELAY_S = 0.2
NOT_SENT, NO_ANSWER = -1, 0  # statuses recorded instead of an HTTP status


def order_body(tag: str, index: int, fields: dict[str, Any] | None = None) -> bytes:
    """A real, valid market order: a tiny SOL->USDC swap, the amount a decimal string;
    `fields` change it (`{"type": "limit", "limitPrice": "…"}`)."""
    return json.dumps(
        {
            "type": "market",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amount": "0.01",
            "slippageBps": 100,
            "clientOrderId": f"{tag}-{index}",
            **(fields or {}),
        },
        separators=(",", ":"),
    ).encode()


def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Offer `rate` req/s for `duration_s`; one record per request (see `_record`)."""
    return asyncio.run(_open_loop(spec))


def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` back-to-back clients for `duration_s`, or until `count` requests."""
    return asyncio.run(_closed_loop(spec))


async def _open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    pool = Pool(spec["port"], spec["connections"], spec.get("host", HOST))
    loop = asyncio.get_running_loop()
    total = int(spec["rate"] * spec["duration_s"])
    start = loop.time() + START_DELAY_S
    send_by = start + spec["duration_s"] + SEND_GRACE_S
    records: list[list[Any]] = []
    pending = set()
    for index in range(total):
        due = start + index / spec["rate"]
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_one(pool, spec, index, start, due, records, send_by))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=SEND_GRACE_S + REQUEST_TIMEOUT_S + 5)
    pool.close()
    return {"records": records, "offered": total, "elapsed_s": loop.time() - start}


async def _closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    pool = Pool(spec["port"], spec["concurrency"], spec.get("host", HOST))
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + spec["duration_s"]
    records: list[list[Any]] = []
    counter = iter(range(spec.get("count") or 10**9))

    async def client() -> None:
        for index in counter:
            if loop.time() >= deadline:
                return
            await _one(pool, spec, index, start, loop.time(), records, None)

    await asyncio.gather(*(client() for _ in range(spec["concurrency"])))
    pool.close()
    return {"records": records, "elapsed_s": loop.time() - start}


async def _one(
    pool: Pool,
    spec: dict[str, Any],
    index: int,
    start: float,
    due: float,
    records: list[list[Any]],
    send_by: float | None,
) -> None:
    """Send one request; record [due offset s, latency ms, status, orderId, reply wall time].

    Latency runs from the due time, so it includes any wait for a free connection.
    """
    loop = asyncio.get_running_loop()
    path = spec["path"]
    body = order_body(spec["tag"], index, spec.get("order")) if path == ENGINE_PATH else b"{}"
    status, order_id = NO_ANSWER, None
    wait_s = None if send_by is None else max(0.0, send_by - loop.time())
    try:
        response = await pool.request(
            "POST", path, body, wait_s=wait_s, timeout_s=REQUEST_TIMEOUT_S
        )
        status = response.status
        if status == 202:
            order_id = json.loads(response.body)["orderId"]
    except NotSent:
        status = NOT_SENT
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        status = NO_ANSWER  # connection error or timeout; its latency is still recorded
    latency_ms = (loop.time() - due) * 1000
    records.append([round(due - start, 4), round(latency_ms, 3), status, order_id, time.time()])
