"""HTTP over a bare socket, for what a client library would not send: partial or trickled bodies,
odd framing, headers a library rewrites."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import Any


def raw_http(port: int, data: bytes, timeout_s: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(data)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            headers = header_map(head)
            if "content-length" in headers and len(body) >= int(headers["content-length"]):
                break
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, header_map(head), body


def header_map(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def port_of(stack) -> int:
    return int(stack.base_url.rsplit(":", 1)[1])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    after_s: float  # from the moment the request's head was sent
    closed: bool  # the server closed the connection after answering

    def json(self) -> Any:
        return json.loads(self.body)


class SlowRequest:
    """A request whose head is sent at once and whose body comes late or never: `answer` waits
    for the server's answer, sending one more byte of the body now and then meanwhile (a
    client that trickles, so that a deadline per read, rather than per body, never runs out)."""

    def __init__(self, port: int, head: bytes, first_bytes: bytes = b"") -> None:
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sent_at = time.monotonic()
        self.conn.sendall(head + first_bytes)

    def answer(self, within_s: float, trickle: bytes = b"", every_s: float = 0.5) -> Answer:
        """The answer, which must come within `within_s` of the head; AssertionError if not."""
        deadline, received, left = self.sent_at + within_s, b"", trickle
        while (parsed := _complete(received)) is None:
            wait_s = deadline - time.monotonic()
            assert wait_s > 0, f"no answer within {within_s}s; received {received[:200]!r}"
            self.conn.settimeout(min(wait_s, every_s))
            try:
                chunk = self.conn.recv(65536)
            except TimeoutError:
                if left:
                    with contextlib.suppress(OSError):  # the server may have stopped reading
                        self.conn.sendall(left[:1])
                    left = left[1:]
                continue
            assert chunk, f"closed without an answer; received {received[:200]!r}"
            received += chunk
        status, headers, body = parsed
        after_s = time.monotonic() - self.sent_at
        closing = headers.get("connection") == "close"
        return Answer(status, headers, body, after_s, closing and self._closed())

    def _closed(self, within_s: float = 3.0) -> bool:
        """Whether the server, having said it closes, does so within `within_s`."""
        self.conn.settimeout(within_s)
        try:
            return self.conn.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.conn.close()


def _complete(received: bytes) -> tuple[int, dict[str, str], bytes] | None:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return None
    headers = header_map(head)
    if len(body) < int(headers.get("content-length", "0")):
        return None
    return int(head.split(b" ", 2)[1]), headers, body
