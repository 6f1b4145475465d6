"""The operators' live dashboard: `GET /dashboard` (admin), fed by a WebSocket.

The page is rendered on the server with the current snapshot, so it shows something at once
and without JavaScript; a small script (inline, no build step, nothing from a CDN) then asks
`POST /dashboard/ticket` for a one-use stream ticket — a browser cannot put a key on a
WebSocket — and opens `/api/dashboard/stream?ticket=…`, which sends a fresh snapshot every
second. The page and the ticket need an `admin` key: `Authorization: Bearer <key>`, or the
browser's login prompt (HTTP Basic, any user name, the key as the password).
"""

from __future__ import annotations

import json
import secrets

from flask import Blueprint, Response, current_app, g, jsonify, render_template_string
from simple_websocket import ConnectionClosed, Server

from order_engine.api.access import operator_principal, requires
from order_engine.api.dashboard_page import PAGE
from order_engine.api.metrics import broker_client
from order_engine.api.sock import sock
from order_engine.infra.db import get_session
from order_engine.infra.redis_client import get_redis
from order_engine.live.streaming import shutting_down
from order_engine.services.access import issue_ticket
from order_engine.services.dashboard import REFRESH_S, DashboardService, feed

bp = Blueprint("dashboard", __name__)


def _snapshot() -> dict:
    return feed.current(DashboardService(get_session(), broker_client()))


@bp.get("/dashboard")
def page() -> Response:
    """The dashboard, rendered with the current snapshot."""
    operator_principal(loopback_is_enough=False)
    nonce = secrets.token_urlsafe(16)
    html = render_template_string(PAGE, snapshot=_snapshot(), nonce=nonce)
    response = Response(html, content_type="text/html; charset=utf-8")
    # Only this page's own script, its own socket, nothing from elsewhere.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/dashboard/ticket")
def ticket() -> tuple[Response, int]:
    """A one-use stream ticket for the dashboard's WebSocket."""
    principal = operator_principal(loopback_is_enough=False)
    assert principal is not None  # loopback alone is not enough here
    settings = current_app.config["SETTINGS"]
    value = issue_ticket(get_redis(), principal, settings.stream_ticket_ttl_s)
    return jsonify(ticket=value, expiresInS=settings.stream_ticket_ttl_s), 201


@sock.route("/api/dashboard/stream", bp=bp)
@requires("admin")
def stream(ws: Server) -> None:
    """A snapshot now, then one a second, until the client leaves or the server stops."""
    slot = g.get("socket_slot")
    try:
        while not shutting_down.is_set():
            if slot is not None:
                slot.renew()
            ws.send(json.dumps(_snapshot(), separators=(",", ":")))
            # Waiting for a message that never comes is the pacing: it returns at once with
            # ConnectionClosed when the client goes.
            ws.receive(timeout=REFRESH_S)
        ws.close(reason=1001, message="server restarting")
    except ConnectionClosed:
        return
