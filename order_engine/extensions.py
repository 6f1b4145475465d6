"""Extension singletons, created bare and bound to an app in `create_app`."""

from __future__ import annotations

import socket
import time

import flask_sock
import simple_websocket
from flask_sock import Sock

sock = Sock()

# After refusing a message over `max_message_size` with close 1009, read and drop what the
# client is still sending, for at most this long / this much, before closing the socket:
# closing with unread bytes makes the kernel answer with a TCP reset, and the client would see
# a reset instead of the 1009 close frame.
LINGER_S = 2.0
LINGER_BYTES = 8 * 1024 * 1024


class BoundedServer(simple_websocket.Server):
    """simple-websocket's server, closing cleanly (1009, no reset) on a message too big."""

    def _handle_events(self) -> bool:
        keep_going = super()._handle_events()
        if (
            not keep_going
            and self.max_message_size
            and self.incoming_message_len > self.max_message_size
        ):
            self._drain_after_close()
        return keep_going

    def _drain_after_close(self) -> None:
        deadline, drained = time.monotonic() + LINGER_S, 0
        try:
            self.sock.shutdown(socket.SHUT_WR)  # our close frame is sent; no more from us
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                drained += len(chunk)
        except OSError:
            return


# flask-sock builds `Server` from its module namespace for every socket.
flask_sock.Server = BoundedServer
