"""HTTP load generators, each run in its own process (`Child`), bounded by a count and a
deadline, and the minimal keep-alive client they use (the generator shares the cores with the
servers it measures: a request is one write and two reads on a kept-alive socket).

Open loop: request i is due at start + i/rate whatever happened to earlier ones, and its latency
runs from that due time, so a slow server shows as latency instead of a lower offered rate (the
coordinated-omission trap of closed-loop tools). Closed loop: `concurrency` clients back to back;
its rate is the saturation throughput. A `Child` is spawned (not forked: the parent runs a
sampling thread) and writes its result to a file; one still running at its deadline is
terminated, then killed, so a run never hangs on its load generator.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib
import json
import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ENGINE_PATH = "/api/orders/execute"
REQUEST_TIMEOUT_S = 30.0
SEND_GRACE_S = 2.0  # a request still waiting for a connection this long after the window: unsent
START_DELAY_S = 0.2
NOT_SENT, NO_ANSWER = -1, 0  # statuses recorded instead of an HTTP status


def _auth() -> str:
    """The bench's API key (bench/stack.py creates it and exports it to its children)."""
    key = os.environ.get("BENCH_API_KEY")
    return f"Authorization: Bearer {key}\r\n" if key else ""


class Connection:
    """One kept-alive connection; `reusable` turns false when the server asks to close."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.port, self.host, self.auth = port, host, _auth()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reusable, self.used = True, False

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` (JSON); the reply's status and body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: "
        head += f"application/json\r\nContent-Length: {len(body)}\r\n{self.auth}\r\n"
        self.writer.write(head.encode("ascii") + body)
        self.used = True
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        payload = await self.reader.readexactly(int(headers.get("content-length") or 0))
        self.reusable = headers.get("connection", "").lower() != "close"
        return int(lines[0].split(" ", 2)[1]), payload

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

    async def post(
        self, path: str, body: bytes, *, wait_s: float | None, timeout_s: float
    ) -> tuple[int, bytes]:
        """Send once a connection is free (within `wait_s`), then wait up to `timeout_s`. A
        request never sent costs the server nothing; one abandoned after sending would still be
        served (gunicorn reads it from the socket) and skew what follows."""
        try:
            await asyncio.wait_for(self._slots.acquire(), wait_s)
        except TimeoutError:
            raise NotSent from None
        conn = self._idle.pop() if self._idle else Connection(self.port, self.host)
        try:
            reply = await asyncio.wait_for(self._send(conn, path, body), timeout_s)
        except BaseException:
            conn.close()
            raise
        else:
            (self._idle.append if conn.reusable else lambda c: c.close())(conn)
            return reply
        finally:
            self._slots.release()

    async def _send(self, conn: Connection, path: str, body: bytes) -> tuple[int, bytes]:
        reused = conn.used
        try:
            return await conn.post(path, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # The server closed an idle kept-alive socket (gunicorn --keep-alive): the request
            # never reached it, so sending it once more on a fresh connection is safe.
            conn.close()
            return await conn.post(path, body)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class Api:
    """A blocking keep-alive client of the engine's API for the bench's own few requests
    (not load): `api("GET", path)` -> (status, decoded JSON body or None)."""

    def __init__(self, port: int, timeout_s: float = 30) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
        self.headers = {"Content-Type": "application/json"}
        self.headers["Authorization"] = f"Bearer {os.environ.get('BENCH_API_KEY', '')}"

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        for attempt in (1, 2):  # once more on a fresh connection the server closed when idle
            try:
                self.connection.request(method, path, payload, self.headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                if attempt == 2:
                    raise
        return response.status, json.loads(data) if data else None


def order_body(tag: str, index: int, fields: dict[str, Any] | None = None) -> bytes:
    """A real, valid market order: a tiny SOL->USDC swap, the amount a decimal string;
    `fields` change it (`{"type": "limit", "limitPrice": "…"}`)."""
    order = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.01"}
    order |= {"slippageBps": 100, "clientOrderId": f"{tag}-{index}", **(fields or {})}
    return json.dumps(order, separators=(",", ":")).encode()


def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Offer `rate` req/s for `duration_s`; one record per request (see `_one`)."""
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
        if (delay := due - loop.time()) > 0:
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
    deadline, records = start + spec["duration_s"], []
    counter = iter(range(spec.get("count") or 10**9))

    async def client() -> None:
        for index in counter:
            if loop.time() >= deadline:
                return
            await _one(pool, spec, index, start, loop.time(), records, None)

    await asyncio.gather(*(client() for _ in range(spec["concurrency"])))
    pool.close()
    return {"records": records, "elapsed_s": loop.time() - start}


async def post(pool: Pool, path: str, body: bytes, wait_s: float | None) -> tuple[int, Any]:
    """POST once a connection is free (within `wait_s`): (HTTP status, orderId of a 202), or
    NOT_SENT / NO_ANSWER (a connection error or a timeout) in place of the status."""
    try:
        status, reply = await pool.post(path, body, wait_s=wait_s, timeout_s=REQUEST_TIMEOUT_S)
        return status, json.loads(reply)["orderId"] if status == 202 else None
    except NotSent:
        return NOT_SENT, None
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return NO_ANSWER, None


async def _one(pool: Pool, spec: dict[str, Any], index: int, start: float, due: float,
               records: list[list[Any]], send_by: float | None) -> None:  # fmt: skip
    """Send one request; record [due offset s, latency ms, status, orderId, reply wall time].
    Latency runs from the due time, so it includes any wait for a free connection."""
    loop = asyncio.get_running_loop()
    path, order = spec["path"], spec.get("order")
    order = order[index % len(order)] if isinstance(order, list) else order  # cycled
    body = order_body(spec["tag"], index, order) if path == ENGINE_PATH else b"{}"
    wait_s = None if send_by is None else max(0.0, send_by - loop.time())
    status, order_id = await post(pool, path, body, wait_s)
    latency_ms = (loop.time() - due) * 1000
    records.append([round(due - start, 4), round(latency_ms, 3), status, order_id, time.time()])


_context = multiprocessing.get_context("spawn")
_running: set[Child] = set()


def _entry(target: str, args: tuple[Any, ...], out_path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its children itself
    module_name, _, function_name = target.rpartition(".")
    try:
        result = getattr(importlib.import_module(module_name), function_name)(*args)
    except Exception:  # noqa: BLE001 - reported to the parent, which decides
        result = {"error": traceback.format_exc()}
    Path(out_path).write_text(json.dumps(result))


class Child:
    """One load-generator process; `target` is "module.function", called with `args`."""

    def __init__(self, target: str, args: tuple[Any, ...], out_path: Path) -> None:
        self.out_path = out_path
        self.process = _context.Process(target=_entry, args=(target, args, str(out_path)))
        self.process.daemon = True

    def start(self) -> Child:
        self.process.start()
        _running.add(self)
        return self

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait (bounded) for the child; its result, or {"error": ...}."""
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.stop()
            return {"error": f"load generator still running after {timeout_s:.0f}s; stopped"}
        _running.discard(self)
        if not self.out_path.exists():
            return {"error": f"load generator exited with {self.process.exitcode}, no result"}
        return json.loads(self.out_path.read_text())

    def stop(self) -> None:
        _running.discard(self)
        for end in (self.process.terminate, self.process.kill):
            if self.process.is_alive():
                end()
                self.process.join(5)


def new_event() -> Any:
    return _context.Event()


def wait_all(children: list[Child], timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    return [child.result(max(1.0, deadline - time.monotonic())) for child in children]


def stop_all() -> None:
    """Stop every load generator still running (Ctrl-C, or an error in the parent)."""
    for child in list(_running):
        child.stop()


def running_pids() -> list[int]:
    return [child.process.pid for child in _running if child.process.pid is not None]
