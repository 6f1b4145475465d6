"""An order's events over its WebSocket, as the client follows them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from order_engine.client.api import FINAL, Api, ApiError, envelope

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

# A server restarting closes streams with 1001 and the seq to resume after; reconnect this
# many times at most.
MAX_RECONNECTS = 5


class OrderStream:
    """One order's events over its WebSocket, each once, in order, up to the final one.

    A server restarting closes the stream with 1001; it is reopened after the last `seq` seen,
    up to MAX_RECONNECTS times. Anything else that ends the stream before the final event (a
    refused handshake, an error message, another close) raises ApiError. After the final event
    the server closes with 1000: `close_code` records the code it closed with.

    websockets' client parses everything that arrives with the handshake's answer: for a
    finished order the server sends the 101, every event and the close in one write, and a
    client that reads the handshake alone loses them (simple-websocket's did, 1 time in 13).
    """

    def __init__(self, api: Api, order_id: str) -> None:
        self.api, self.order_id = api, order_id
        self.last_seq = 0
        self.close_code: int | None = None
        self.final: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed

        reconnects = 0
        while self.final is None:
            with self._connect() as ws:
                try:
                    yield from self._events(ws)
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else 1006
                    if code == 1001 and reconnects < MAX_RECONNECTS:
                        reconnects += 1  # the server restarts: resume after the last seq
                        time.sleep(0.5 * reconnects)
                        continue
                    reason = f" {closed.rcvd.reason}" if closed.rcvd and closed.rcvd.reason else ""
                    raise ApiError(
                        None, {"description": f"stream closed ({code}{reason}) before the end"}
                    ) from None
                self.close_code = _await_close(ws)

    def _connect(self) -> ClientConnection:
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.api.key}"} if self.api.key else {}
        try:
            # No permessage-deflate: events are small, and the server would spend CPU
            # compressing each one for this client.
            return connect(
                self.api.ws_url(self.order_id, self.last_seq),
                additional_headers=headers,
                compression=None,
                open_timeout=self.api.timeout_s,
            )
        except InvalidStatus as refused:  # the API's error envelope, as for a REST call
            status = refused.response.status_code
            raise ApiError(status, envelope(bytes(refused.response.body or b""), status)) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise ApiError(None, {"description": f"cannot stream: {exc}"}) from None

    def _events(self, ws: ClientConnection) -> Iterator[dict[str, Any]]:
        """The new events on one connection, until the final one (or a close raises)."""
        while True:
            try:
                raw = ws.recv(timeout=60)
            except TimeoutError:
                continue  # a waiting order: nothing new for a minute
            message = json.loads(raw)
            if "seq" not in message:  # an error message before a close
                raise ApiError(message.get("code"), message)
            if message["seq"] <= self.last_seq:
                continue
            self.last_seq = message["seq"]
            yield message
            if message["status"] in FINAL:
                self.final = message
                return


def _await_close(ws: ClientConnection, timeout_s: float = 5.0) -> int | None:
    """The code the server closes with after the final event (it closes at once); None if it
    keeps the stream open longer (the client then closes it)."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            ws.recv(timeout=timeout_s)  # nothing follows the final event
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006
    except TimeoutError:
        return None
