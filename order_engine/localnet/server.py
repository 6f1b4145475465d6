"""The localnet's HTTP server: a small WSGI app on gevent's `pywsgi`, one process, one thread.

Why this stack: the localnet is on every order's path (one sendTransaction per order plus
amortised status and account reads), and its state is one in-memory cluster. A single process
with cooperative greenlets serves thousands of keep-alive connections from the engine's workers
without threads, so the cluster needs no locks (a request runs to completion between network
waits) and no state has to be shared between processes. gevent's WSGI server is C-accelerated
(libev, its own HTTP parser), is already a dependency of the project, and needs no
monkey-patching here: the app does no blocking network I/O (SQLite writes are local and short).
JSON goes through the stdlib's C encoder, and account payloads are served from cached text.

Routes: `POST /` JSON-RPC 2.0 (single or batch, Solana methods plus `localnet_*` admin methods);
`POST /admin/<command>` the same admin methods with the params object as the body;
`GET /health` "ok" (like a validator's health endpoint); the block engine's paths, as Jito serves
them: `POST /api/v1/bundles` (sendBundle, getBundleStatuses, getInflightBundleStatuses,
getTipAccounts), `POST /api/v1/transactions` (sendTransaction as a bundle of one) and
`GET /api/v1/bundles/tip_floor`. A background greenlet advances the
cluster at every slot, so pools follow the market and landings are committed even when idle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
from gevent.pywsgi import WSGIHandler, WSGIServer

from order_engine.localnet.node import BUNDLES, RPC, TRANSACTIONS, Localnet

log = logging.getLogger(__name__)

MAX_REQUEST_BODY_SIZE = 50 * 1024  # agave's MAX_REQUEST_BODY_SIZE [AGV-RPC]
# The block engine's JSON-RPC paths, by the node's method table they reach.
BLOCK_ENGINE_ROUTES = {"/api/v1/bundles": BUNDLES, "/api/v1/transactions": TRANSACTIONS}
TIP_FLOOR_PATH = "/api/v1/bundles/tip_floor"
_JSON = [("Content-Type", "application/json")]
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Payload Too Large",
    503: "503 Service Unavailable",
}


def make_app(node: Localnet) -> Callable[..., Iterable[bytes]]:
    """The WSGI application over `node`."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        if method == "GET" and path == "/health":
            start_response(_STATUS[200], [("Content-Type", "text/plain")])
            return [b"ok"]
        if method == "GET" and path == TIP_FLOOR_PATH:
            floor = node.tip_floor()
            start_response(_STATUS[200], [*_JSON, ("Content-Length", str(len(floor)))])
            return [floor]
        if method != "POST":
            start_response(_STATUS[405], [("Allow", "POST")])
            return [b""]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_REQUEST_BODY_SIZE:
            start_response(_STATUS[413], [])
            return [b""]
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        route = BLOCK_ENGINE_ROUTES.get(path, RPC)
        if path.startswith("/admin/"):
            command = path[len("/admin/") :]
            body = _admin_request(command, body)
        elif path != "/" and path not in BLOCK_ENGINE_ROUTES:
            start_response(_STATUS[404], [])
            return [b""]
        reply = node.handle_body(body, route)
        if reply.stall_s:
            # The `stall` fault: hold the answer as a sender that died mid-send would see it.
            gevent.sleep(reply.stall_s)
        if reply.delay_ms:
            gevent.sleep(reply.delay_ms / 1000)
        start_response(
            _STATUS.get(reply.status, f"{reply.status} Error"),
            [*_JSON, ("Content-Length", str(len(reply.body)))],
        )
        return [reply.body]

    return app


def _admin_request(command: str, body: bytes) -> bytes:
    try:
        params = json.loads(body) if body.strip() else {}
    except ValueError:
        return body  # let the node answer -32700
    method = "localnet_" + "".join(
        part if i == 0 else part[:1].upper() + part[1:]
        for i, part in enumerate(command.replace("-", "_").split("_"))
    )
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


def _ticker(node: Localnet) -> None:
    """Advance the cluster at the start of every slot."""
    cluster = node.cluster
    while True:
        try:
            cluster.advance()
        except Exception:  # noqa: BLE001 - the ticker must survive a bad tick; it is logged
            log.exception("localnet tick failed")
        now_ms = cluster.now_ms()
        next_ms = cluster.slot_start_ms(cluster.slot_at(now_ms) + 1)
        gevent.sleep(max(next_ms - now_ms, 1) / 1000)


class _Handler(WSGIHandler):
    """pywsgi writes the headers and the body in separate sends; with Nagle's algorithm on,
    the second waits for the client's delayed ACK (~40 ms per request on keep-alive
    connections). Small JSON-RPC answers want TCP_NODELAY."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # not a TCP socket
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()


def serve(node: Localnet, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then persist and close."""
    settings = node.settings
    server = WSGIServer(
        (settings.host, settings.port), make_app(node), log=None, handler_class=_Handler
    )
    server.start()
    ticker = gevent.spawn(_ticker, node)
    stopping = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopping.set)
    url = f"http://{settings.host}:{server.server_port}"
    if ready is not None:
        ready(url)
    try:
        stopping.wait()
    finally:
        ticker.kill()
        server.stop(timeout=1)
        node.close()
