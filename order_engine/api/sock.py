"""Extension singletons, created bare and bound to an app in `create_app`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import socket
import time

import flask_sock
import simple_websocket
from flask_sock import Sock
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from order_engine.errors import BadRequestError, ClientGoneError, UpgradeRequiredError

sock = Sock()

# After an answer that leaves part of what the client sent unread (a 1009 close; an HTTP answer
# given before the whole body was read), read and drop what the client is still sending, for at
# most this long / this much, before closing the socket: closing with unread bytes makes the
# kernel answer with a TCP reset, and the client could see the reset instead of the answer.
LINGER_S = 2.0
LINGER_BYTES = 8 * 1024 * 1024


def drain_before_close(conn: socket.socket) -> None:
    """Say we send nothing more, then read and drop what the client still sends, until it
    closes its side or LINGER_S / LINGER_BYTES run out."""
    deadline, drained = time.monotonic() + LINGER_S, 0
    try:
        conn.shutdown(socket.SHUT_WR)
        while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        return


# RFC 6455 §1.3: the accept token is the SHA-1 of the client's key and this GUID, in base64.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class BoundedServer(simple_websocket.Server):
    """simple-websocket's server, answering the upgrade itself, and closing cleanly (1009, no
    reset) on a message too big."""

    def handshake(self) -> None:
        """Answer the upgrade from the request gunicorn has parsed (RFC 6455 §4.2.2).

        simple-websocket wrote the request's headers back into bytes for wsproto to parse
        again, and built its answer through h11: 7 % of the API's CPU under a socket per
        order. A malformed upgrade made wsproto raise, which became a 500; it is a 400 (426
        for another protocol version) here. No extension is agreed (permessage-deflate on a
        few hundred bytes of JSON costs more CPU than it saves), nor a subprotocol (none is
        defined). Werkzeug's router has already checked `Upgrade: websocket` and
        `Connection: Upgrade`: only such a request reaches a WebSocket route."""
        version = self.environ.get("HTTP_SEC_WEBSOCKET_VERSION", "")
        if version != "13":
            error = UpgradeRequiredError(
                f"Sec-WebSocket-Version must be 13 (RFC 6455), not {version[:16]!r}."
            )
            error.headers["Sec-WebSocket-Version"] = "13"
            raise error
        key = self.environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise BadRequestError(
                "Sec-WebSocket-Key must be 16 random bytes in base64 (RFC 6455 §4.1).",
                errors={"Sec-WebSocket-Key": ["Not 16 bytes in base64."]},
            )
        accept = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest())
        try:
            self.sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
        except OSError as exc:  # reset or gone before its answer
            raise ClientGoneError(
                f"The client left during the WebSocket handshake: {exc}."
            ) from None
        # The connection after the handshake: frames, as WSConnection would hand them on to.
        self.ws = Connection(ConnectionType.SERVER)
        self.connected = True

    def send_all(self, texts: list[str], close: tuple[int, str] | None = None) -> None:
        """Send text messages, then optionally close (code, reason), in one write: each write
        is a system call, which on this machine costs more CPU than framing the message."""
        if not self.connected:
            raise simple_websocket.ConnectionClosed(self.close_reason, self.close_message)
        out = b"".join(self.ws.send(TextMessage(data=text)) for text in texts)
        if close is not None:
            out += self.ws.send(CloseConnection(*close))
            self.connected = False
        if out:
            try:
                self.sock.sendall(out)
            except OSError:  # the client reset or left: its socket ends here, quietly
                self.connected = False
                if close is None:
                    raise simple_websocket.ConnectionClosed(1006, "the client went away") from None

    def _handle_events(self) -> bool:
        keep_going = super()._handle_events()
        if (
            not keep_going
            and self.max_message_size
            and self.incoming_message_len > self.max_message_size
        ):
            drain_before_close(self.sock)
        return keep_going


# flask-sock builds `Server` from its module namespace for every socket.
flask_sock.Server = BoundedServer
