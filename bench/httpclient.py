"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load generators.

The load generator shares the 2 cores with the servers it measures, so it must be cheap: a
request here is one write and two reads on a kept-alive socket, with no per-request client
object. It speaks only what the benchmark needs (a JSON body, a Content-Length reply).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

HOST = "127.0.0.1"  # this machine's loopback, unless a host is named (bench/cluster.py)


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
