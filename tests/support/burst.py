"""A WebSocket server that answers the handshake, every event and the close in one write, then
hangs up: what the order stream does for a finished order, made certain instead of 1 time in 13.

A client that reads only the handshake from that first read, and leaves the frames that came with
it unparsed, sees no event and no close code (1005). The API's own answers to plain HTTP requests
(`GET /api/orders/<id>`) are the order as JSON, so the command-line client can be pointed at it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import uuid
from typing import Any

# RFC 6455, section 1.3: the server proves it read the key by hashing it with this GUID.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STATUSES = ("pending", "routing", "building", "submitted", "confirmed")


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def finished_order_events(order_id: str) -> list[dict[str, Any]]:
    """A confirmed order's five events, in the API's shape."""
    data: dict[str, dict[str, Any]] = {
        "routing": {"decision": {"dex": "raydium"}},
        "building": {"dex": "raydium", "minAmountOut": "36.9"},
        "submitted": {"txHash": "4FwH"},
        "confirmed": {
            "dex": "raydium",
            "amountIn": "0.25",
            "amountOut": "37.1",
            "executedPrice": "148.4",
            "realisedSlippageBps": "0.00",
            "txHash": "4FwH",
        },
    }
    return [
        {
            "orderId": order_id,
            "seq": seq,
            "status": status,
            "at": f"2026-12-01T12:00:0{seq}.000Z",
            "attempt": 1,
            "data": data.get(status, {}),
        }
        for seq, status in enumerate(STATUSES, start=1)
    ]


class BurstServer:
    """Serves one finished order on 127.0.0.1 until `close()`; `ws_connections` counts the
    streams it answered."""

    def __init__(self) -> None:
        self.order_id = str(uuid.uuid4())
        self.events = finished_order_events(self.order_id)
        self.ws_connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, name="burst-server", daemon=True)
        self._thread.start()

    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/orders/execute?orderId={self.order_id}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() below (Linux)
        self._sock.close()
        self._thread.join(5)

    def __enter__(self) -> BurstServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _peer = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        headers = {
            name.strip().lower(): value.strip()
            for name, _sep, value in (
                line.decode("latin-1").partition(":") for line in request.split(b"\r\n")[1:]
            )
        }
        if headers.get("upgrade", "").lower() != "websocket":
            body = json.dumps({"orderId": self.order_id, "status": "confirmed"}).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            return
        self.ws_connections += 1
        digest = hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()
        burst = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
        )
        for event in self.events:
            burst += _frame(0x1, json.dumps(event).encode())
        burst += _frame(0x8, struct.pack("!H", 1000))  # close, 1000: the order is final
        conn.sendall(burst)
        # Hang up our side, then wait (briefly) for the client's close frame and its end, as
        # the API does: the client reads EOF, not a reset.
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(2)
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass
