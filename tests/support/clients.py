"""Clients for tests against running processes (stdlib + simple-websocket): HTTP and WebSocket
with the suite's API key, and the bodies of the orders they send (JSON-RPC to the localnet:
`order_engine.ops.launch.rpc`)."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import simple_websocket

# The suite's API key, stored in every test database by tests.support.servers.install_test_key (the
# default account; orders:read and orders:write). Every request and socket below sends it
# unless told otherwise.
TEST_API_KEY_PREFIX = "7e570000"
TEST_API_KEY = f"oe_{TEST_API_KEY_PREFIX}_" + "t" * 43


def auth(key: str | None = TEST_API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def request(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10,
) -> HttpResponse:
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **auth(), **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            return HttpResponse(response.status, json.load(response), dict(response.headers))
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, json.load(error), dict(error.headers))


class WsClient(simple_websocket.Client):
    """simple-websocket's client reads the handshake response with a single recv(); frames that
    arrive in the same TCP segment (a server that answers and closes at once) stay queued in
    wsproto until a next recv that never returns data, so they are lost. Drain them here.

    `connect` sends the suite's API key unless `headers` say otherwise."""

    @classmethod
    def connect(cls, url, *args, headers=None, **kwargs):  # type: ignore[override]
        return super().connect(url, *args, headers={**auth(), **(headers or {})}, **kwargs)

    def handshake(self) -> None:
        super().handshake()
        if not self._handle_events():
            # A close frame was among them: its code is recorded; keep the object usable so
            # the reader thread starts, sees EOF and ends the connection normally.
            self.connected = True


@dataclass
class StreamResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_message: str | None = None

    @property
    def statuses(self) -> list[str]:
        return [e["status"] for e in self.events]

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]


def stream(
    url: str,
    first_message: Any = None,
    timeout_s: float = 30,
    headers: dict[str, str] | None = None,
) -> StreamResult:
    """Connect, optionally send a first message, and read until the server closes."""
    result = StreamResult()
    ws = WsClient.connect(url, headers=headers)
    try:
        if first_message is not None:
            ws.send(first_message if isinstance(first_message, str) else json.dumps(first_message))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw = ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if raw is None:
                continue
            message = json.loads(raw)
            result.messages.append(message)
            if "seq" in message:
                result.events.append(message)
        raise AssertionError(f"stream {url} still open after {timeout_s}s: {result.statuses}")
    except simple_websocket.ConnectionClosed:
        result.close_code, result.close_message = ws.close_reason, ws.close_message
    finally:
        with contextlib.suppress(simple_websocket.ConnectionClosed):
            ws.close()
    return result


def order_body(**overrides: Any) -> dict[str, Any]:
    # Wide slippage: the seeded market has occasional jumps of up to 2 %, which must not fail
    # orders in tests about something else.
    return {
        "type": "market",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "0.25",
        "slippageBps": 300,
        **overrides,
    }


def unique_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
