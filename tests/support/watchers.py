"""Waiting for things that happen in other processes: conditions with a deadline, and
WebSocket watchers that follow an order to its terminal event."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import simple_websocket

from tests.support.clients import WsClient
from tests.support.invariants import TERMINAL

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # noqa: BLE001 - a not-yet-ready server raises; keep polling
            last_error = exc
        else:
            if result:
                return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last_error!r})")


class Watcher(threading.Thread):
    """Follows one order over the WebSocket until its terminal event, like a careful client.

    With `resume`, a dropped connection (server restart, 1011) is re-opened with
    `?afterSeq=<last seq seen>`, so the events of all connections together must be the order's
    history exactly once.
    """

    def __init__(
        self,
        ws_base: str,
        order_id: str,
        *,
        resume: bool = True,
        after_seq: int = 0,
        delay_s: float = 0.0,
        timeout_s: float = 90.0,
        path: str = "/api/orders/execute",
    ) -> None:
        super().__init__(name=f"watch-{order_id[:8]}", daemon=True)
        self.ws_base, self.order_id, self.path = ws_base, order_id, path
        self.resume, self.first_after_seq = resume, after_seq
        self.delay_s, self.timeout_s = delay_s, timeout_s
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.connect_errors: list[str] = []
        self.connections = 0
        self._stop_reading = threading.Event()

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.first_after_seq

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1]["status"] in TERMINAL

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    def url(self) -> str:
        url = f"{self.ws_base}{self.path}?orderId={self.order_id}"
        return f"{url}&afterSeq={self.last_seq}" if self.last_seq else url

    def drop(self) -> None:
        """Make the client hang up its current connection (it reconnects if `resume`)."""
        self._stop_reading.set()

    def run(self) -> None:
        time.sleep(self.delay_s)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and not self.finished:
            try:
                ws = WsClient.connect(self.url())
            except Exception as exc:  # noqa: BLE001 - refused/reset while a server restarts
                self.connect_errors.append(repr(exc))
                time.sleep(0.2)
                continue
            self.connections += 1
            try:
                self._read(ws, deadline)
            finally:
                with contextlib.suppress(Exception):
                    ws.close()
            if not self.resume:
                return
            if not self.finished:
                time.sleep(0.1)

    def _read(self, ws: simple_websocket.Client, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                if self._stop_reading.is_set():
                    self._stop_reading.clear()
                    self.close_codes.append(None)
                    return
                raw = ws.receive(timeout=0.2)
                if raw is None:
                    continue
                message = json.loads(raw)
                self.messages.append(message)
                if "seq" in message:
                    self.events.append(message)
        except simple_websocket.ConnectionClosed:
            self.close_codes.append(ws.close_reason)
