"""The request body: read only for a caller the guard let through, whole, within a size and a
deadline, and only so many at once from one client address.

The server reads a body as it arrives, so a client that sends it slowly, or never finishes it,
holds its connection (one of API_WORKER_CONNECTIONS) for as long as it likes. Here:

- the access guard runs first (api/access.py): a request without a valid key is answered 401
  and its body never read; a route that takes no body (404, 405) is answered without it too;
- a body in a `Content-Encoding` other than `identity` is refused unread (415);
- a `Content-Length` over MAX_BODY_BYTES is refused unread; a chunked body is read up to one
  byte more than that, which is a 413 like any other oversized body;
- the body must be in within BODY_TIMEOUT_S of the start of its read (408);
- one client address has at most MAX_BODIES_PER_ADDRESS bodies being read at once in this
  process; one more is refused at once (429).

The body read is then handed to the view as a body of known length. An answer given before the
whole body was read closes the connection (`Connection: close`, which ops/gunicorn_conf.py makes
gunicorn honour): the rest of the body would otherwise be read as the next request.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from flask import Flask, Response, current_app, g, request

from order_engine.api.access import is_websocket_handshake
from order_engine.api.deadlines import Deadlines
from order_engine.errors import (
    BadRequestError,
    ClientGoneError,
    PayloadTooLargeError,
    RequestTimeoutError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
)


def read_body() -> None:
    """Before the view, after the guard: the body, whole, or a refusal."""
    environ = request.environ
    declared = _declared_length(environ)
    if declared == 0 or request.routing_exception is not None or is_websocket_handshake():
        return  # no body, or answered without reading it
    _refuse_encoded(request.headers.get("Content-Encoding", ""))
    settings = current_app.config["SETTINGS"]
    if declared is not None and declared > settings.max_body_bytes:
        raise _too_large(settings.max_body_bytes)
    wanted = declared if declared is not None else settings.max_body_bytes + 1
    body = _read_within_bounds(environ, wanted)
    if declared is None and len(body) > settings.max_body_bytes:
        raise _too_large(settings.max_body_bytes)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    g.body_read = True


# Set in the environ of a request answered before its body was read: the server then drains
# what the client still sends before it closes (ops/gunicorn_conf.py).
UNREAD_BODY = "order_engine.unread_body"


def close_unless_read(response: Response) -> Response:
    """An answer to a request whose body is still (partly) unread ends the connection."""
    if _declared_length(request.environ) != 0 and not g.get("body_read"):
        response.headers["Connection"] = "close"
        request.environ[UNREAD_BODY] = True
    return response


def _declared_length(environ: dict[str, Any]) -> int | None:
    """The body's length: 0 for none, None for a chunked body (its length is known once read)."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    raw = environ.get("CONTENT_LENGTH") or "0"
    if not (raw.isascii() and raw.isdigit()):
        return 0  # gunicorn refuses such a request before; Werkzeug reads it as no body
    digits = raw.lstrip("0")
    # Longer than any limit, and kept away from int()'s limit on digits.
    return int(digits or "0") if len(digits) <= 18 else 10**18


def _refuse_encoded(header: str) -> None:
    """Bodies are taken as sent: a compressed one would be read as JSON and fail, or be
    executed without the server having looked at what it decodes to."""
    codings = [c.strip().lower() for c in header.split(",")]
    unknown = [c for c in codings if c not in ("", "identity")]
    if unknown:
        raise UnsupportedMediaTypeError(
            f"The body's Content-Encoding {unknown[0]!r} is not accepted: send the body "
            "uncompressed (no Content-Encoding, or identity).",
            errors={"Content-Encoding": ["Only identity."]},
            headers={"Accept-Encoding": "identity"},  # RFC 7694 §3
        )


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The body is larger than {limit} bytes.")


def _read_within_bounds(environ: dict[str, Any], wanted: int) -> bytes:
    """Read up to `wanted` bytes of the body, holding one of this address's slots meanwhile."""
    readers: BodyReaders = current_app.extensions["order_engine.body_readers"]
    address = request.remote_addr or ""
    if not readers.take(address):
        raise TooManyRequestsError(
            f"This address is already sending {readers.cap} request bodies at once; send the "
            "next when one of them is in.",
            headers={"Retry-After": "1"},
        )
    try:
        return _read_by_deadline(environ, wanted)
    finally:
        readers.release(address)


def _read_by_deadline(environ: dict[str, Any], wanted: int) -> bytes:
    deadlines: Deadlines | None = current_app.extensions.get("order_engine.body_deadlines")
    if deadlines is None:
        # Made on first use, in the process that serves: under gevent its waits must be
        # gevent's, which they are only once the worker has patched threading (after fork).
        timeout_s = current_app.config["SETTINGS"].body_timeout_s
        deadlines = current_app.extensions["order_engine.body_deadlines"] = Deadlines(timeout_s)
    failure: Exception | None = None
    with deadlines.watch(environ.get("gunicorn.socket")) as watch:
        try:
            body = environ["wsgi.input"].read(wanted)
        except Exception as exc:  # noqa: BLE001 - told apart below
            body, failure = b"", exc
    if watch.expired:  # whatever the server made of the end of its stream
        raise RequestTimeoutError(
            f"The body was not in within {deadlines.timeout_s:g} s; send it whole, at once."
        )
    if isinstance(failure, OSError) or (
        failure is None and _declared_length(environ) is not None and len(body) < wanted
    ):
        raise ClientGoneError("The client closed the connection before its body was in.")
    if failure is not None:  # the server's own parse error, e.g. a bad chunk
        raise BadRequestError(f"The chunked body is malformed ({failure}).")
    return body


class BodyReaders:
    """How many bodies each client address is sending at once, in this process, up to a cap.

    A body that arrives with its request is read without the server waiting, so an address's
    count rises above one only while its bodies are slow: the cap bounds what a slow client
    holds, not what a fast one sends."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._reading: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, address: str) -> bool:
        with self._lock:
            count = self._reading.get(address, 0)
            if count >= self.cap:
                return False
            self._reading[address] = count + 1
            return True

    def release(self, address: str) -> None:
        with self._lock:
            count = self._reading.pop(address) - 1
            if count:
                self._reading[address] = count


def init_app(app: Flask) -> None:
    """After access.init_app: the guard must have run before a body is read."""
    settings = app.config["SETTINGS"]
    app.extensions["order_engine.body_readers"] = BodyReaders(settings.max_bodies_per_address)
    app.before_request(read_body)
    app.after_request(close_unless_read)
