"""WebSocket streaming of order events, on the same path as order submission.

- `GET /api/orders/execute?orderId=<id>` (Upgrade: websocket) streams that order.
- `GET /api/orders/execute` (Upgrade: websocket) without `orderId`: the first message is an
  order body; the server submits it, sends its `pending` event, then streams the rest.
- `GET /api/orders/execute/ws?orderId=<id>`: alias kept for clients of the TypeScript service.

Close codes: 1000 after the terminal event (at once when `afterSeq` is at or past a finished
order's last event); 1003 a binary frame (the API defines text frames only), 4400 malformed id,
body or afterSeq, 4403 a key without `orders:write` submitting, 4404 unknown order (another
account's included) and 4429 the account's in-flight cap (each after a JSON error message); 1009
a message over MAX_BODY_BYTES; 1011 when a dependency is down. The handshake itself is refused
with 401/403/429 (access.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

from flask import Blueprint, current_app, g, request
from simple_websocket import ConnectionClosed

from order_engine.api.access import current_principal, requires
from order_engine.api.intake import order_service, owner_filter, submit_order
from order_engine.api.sock import BoundedServer, sock
from order_engine.errors import OrderEngineError, envelope
from order_engine.infra import logs, metrics
from order_engine.live.streaming import HubUnavailable, OrderStream, get_hub, shutting_down
from order_engine.models import OrderStatus
from order_engine.services.order import OrderService

log = logging.getLogger(__name__)
bp = Blueprint("order_streams", __name__)

FIRST_MESSAGE_TIMEOUT_S = 30
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_UNSUPPORTED, CLOSE_UNAVAILABLE = 1000, 1001, 1003, 1011
CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_TOO_MANY = 4400, 4403, 4404, 4429


class StreamClosed(Exception):
    def __init__(self, close_code: int, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.close_code, self.body = close_code, body


@sock.route("/api/orders/execute", bp=bp)
@requires("orders:read")
def execute_stream(ws: BoundedServer) -> None:
    """Stream an order (`?orderId=`) or submit one from the first message and stream it.
    ---
    get:
      summary: "WebSocket: stream an order, or submit one as the first message"
      description: >-
        Upgrade to WebSocket. With ?orderId= the server sends every event of
        that order once, in seq order, then closes with 1000 after the terminal
        one. Without it, send an OrderCreate body first, in a text frame.
        Errors: a JSON error message, then close 1003 (a binary frame), 4400
        (bad id/body), 4404 (unknown order) or 1011 (dependency down).
      parameters:
        - name: orderId
          in: query
          required: false
          schema: {type: string, format: uuid}
          description: The order to follow; without it, the first message is an order body.
        - name: afterSeq
          in: query
          required: false
          schema: {type: integer, minimum: 0, maximum: 999999999}
          description: "Resume: only events after this seq."
        - name: ticket
          in: query
          required: false
          schema: {type: string}
          description: A one-use ticket from POST /api/stream-tickets (browsers).
      responses:
        "101":
          description: Switching protocols; messages are Events
          content:
            application/json:
              schema: Event
        "401": Unauthorized
        "403": Forbidden
        "426": UpgradeRequired
        "429": TooManyRequests
    """
    _serve(ws, submit_allowed=True)


@sock.route("/api/orders/execute/ws", bp=bp)
@requires("orders:read")
def execute_stream_alias(ws: BoundedServer) -> None:
    """Alias of the streaming endpoint for clients of the service this one replaces."""
    _serve(ws, submit_allowed=False)


def _serve(ws: BoundedServer, submit_allowed: bool) -> None:
    metrics.WEBSOCKETS_OPEN.inc()
    try:
        _serve_counted(ws, submit_allowed)
    finally:
        metrics.WEBSOCKETS_OPEN.dec()


def _serve_counted(ws: BoundedServer, submit_allowed: bool) -> None:
    service = order_service()
    order_id: uuid.UUID | None = None
    try:
        order_id = _order_to_stream(ws, service, submit_allowed)
        _stream(ws, service, order_id)
    except StreamClosed as closed:
        _close(ws, closed.close_code, closed.body)
    except ConnectionClosed:
        return
    except (HubUnavailable, Exception) as exc:  # noqa: BLE001 - tell the client, then close
        log.warning("stream failed: %s: %s", type(exc).__name__, exc)
        body = _error(
            CLOSE_UNAVAILABLE,
            "Service Unavailable",
            "The server cannot serve this stream right now (a dependency is down); reconnect.",
        )
        if order_id is not None:
            # An order submitted on this socket is accepted: say which, so that the client
            # follows it rather than submitting it again.
            body["orderId"] = str(order_id)
            body["description"] = (
                f"Order {order_id} is accepted, but its stream is unavailable right now (a "
                f"dependency is down); reconnect with ?orderId={order_id}."
            )
        _close(ws, CLOSE_UNAVAILABLE, body)


def _order_to_stream(ws: BoundedServer, service: OrderService, submit_allowed: bool) -> uuid.UUID:
    raw_id = request.args.get("orderId")
    if raw_id is None and submit_allowed:
        return _submit_first_message(ws, service)
    if raw_id is None:
        raise StreamClosed(
            CLOSE_BAD_REQUEST,
            "no order id",
            _error(
                CLOSE_BAD_REQUEST,
                "Bad Request",
                "orderId is required on this path: connect with ?orderId=<id>, or submit an "
                "order on /api/orders/execute (first message = the order body).",
                {"orderId": ["Required."]},
            ),
        )
    try:
        order_id = uuid.UUID(raw_id or "")
    except ValueError:
        raise StreamClosed(
            CLOSE_BAD_REQUEST,
            "bad order id",
            _error(
                CLOSE_BAD_REQUEST,
                "Bad Request",
                f"{raw_id!r} is not an order id (a UUID).",
                {"orderId": ["Must be a UUID."]},
            ),
        ) from None
    # Whether the order exists (for this account) is answered by the stream's first history
    # read (`_stream`): another account's order is as unknown as a missing one.
    return order_id


def _submit_first_message(ws: BoundedServer, service: OrderService) -> uuid.UUID:
    if not current_principal().can("orders:write"):
        raise StreamClosed(
            CLOSE_FORBIDDEN,
            "forbidden",
            _error(
                CLOSE_FORBIDDEN,
                "Forbidden",
                "This API key lacks the 'orders:write' scope: it may follow orders "
                "(?orderId=) but not submit them.",
            ),
        )
    message = _first_message(ws)
    try:
        # The same validation and intake as POST /api/orders/execute.
        submitted = submit_order(message, request.headers.get("Idempotency-Key"))
    except OrderEngineError as exc:
        code = CLOSE_TOO_MANY if exc.status == 429 else CLOSE_BAD_REQUEST
        raise StreamClosed(
            code,
            "bad order",
            _error(
                code,
                exc.message,
                exc.description,
                exc.errors,
            ),
        ) from None
    return submitted.order.id


def _first_message(ws: BoundedServer) -> str:
    """The order body: a text frame, within FIRST_MESSAGE_TIMEOUT_S."""
    message = ws.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
    if message is None:
        raise StreamClosed(
            CLOSE_BAD_REQUEST,
            "no order",
            _error(
                CLOSE_BAD_REQUEST,
                "Bad Request",
                f"Send an order body as the first message within {FIRST_MESSAGE_TIMEOUT_S}s, "
                "or connect with ?orderId=<id> to follow an existing order.",
            ),
        )
    if isinstance(message, bytes):
        raise StreamClosed(
            CLOSE_UNSUPPORTED,
            "binary frame",
            _error(
                CLOSE_UNSUPPORTED,
                "Unsupported Data",
                "Binary frames are not part of this API: send the order body as JSON in a text "
                "frame.",
            ),
        )
    return message


def _stream(ws: BoundedServer, service: OrderService, order_id: uuid.UUID) -> None:
    logs.bind(order_id=order_id)  # this socket's lines name its order
    hub = get_hub(current_app.config["SETTINGS"].redis_url)
    after_seq = _after_seq()
    if after_seq:
        _check_resume_point(service, order_id, after_seq)
    slot = g.get("socket_slot")
    with hub.subscribe(str(order_id)) as subscription:
        # Subscribed first; the history read below cannot miss an event published meanwhile.
        # It also tells an unknown order (no row at all) without a query of its own.
        history = service.opening_history(order_id, after_seq, owner_filter())
        if history is None:
            raise StreamClosed(
                CLOSE_NOT_FOUND,
                "unknown order",
                _error(
                    CLOSE_NOT_FOUND,
                    "Not Found",
                    f"No order {order_id}.",
                ),
            )
        stream = OrderStream(
            subscription,
            lambda seq: service.events_after(order_id, seq),
            hub,
            after_seq=after_seq,
            first_history=history,
        )
        while ws.connected:
            if slot is not None:
                slot.renew()
            texts = [json.dumps(event, separators=(",", ":")) for event in stream.next_batch()]
            if stream.finished:
                ws.send_all(texts, (CLOSE_NORMAL, "order finished"))
                return
            ws.send_all(texts)
            if shutting_down.is_set():
                ws.close(
                    reason=CLOSE_GOING_AWAY,
                    message=f"server restarting; reconnect with afterSeq={stream.last_seq}",
                )
                return


def _check_resume_point(service: OrderService, order_id: uuid.UUID, after_seq: int) -> None:
    """A finished order with nothing after `afterSeq` closes at once (1000); a resume point past
    an unfinished order's last event names events that do not exist (4400)."""
    order = service.find(order_id, owner_filter())
    if order is None or after_seq < order.last_seq:
        return
    if OrderStatus(order.status).is_terminal:
        raise StreamClosed(
            CLOSE_NORMAL,
            "finished",
            _error(
                CLOSE_NORMAL,
                "Finished",
                f"Order {order_id} is {order.status}; it has no events after seq {order.last_seq}.",
            )
            | {"type": "finished", "lastSeq": order.last_seq},
        )
    if after_seq > order.last_seq:
        raise StreamClosed(
            CLOSE_BAD_REQUEST,
            "bad afterSeq",
            _error(
                CLOSE_BAD_REQUEST,
                "Bad Request",
                f"afterSeq {after_seq} is past order {order_id}'s last event ({order.last_seq}).",
                {"afterSeq": [f"At most {order.last_seq}."]},
            ),
        )


def _after_seq() -> int:
    """`?afterSeq=N` resumes a stream: only events after seq N are sent."""
    raw = request.args.get("afterSeq", "0")
    # isascii: str.isdigit() is also true of "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise StreamClosed(
            CLOSE_BAD_REQUEST,
            "bad afterSeq",
            _error(
                CLOSE_BAD_REQUEST,
                "Bad Request",
                f"afterSeq must be a whole number, got {raw!r}.",
                {"afterSeq": ["Must be a whole number."]},
            ),
        )
    return int(raw)


def _error(
    code: int, message: str, description: str, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The error envelope as a stream message: `type` tells it from the order's events."""
    return {"type": "error", **envelope(code, message, description, errors)}


def _close(ws: BoundedServer, code: int, body: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionClosed):
        ws.send_all([json.dumps(body)], (code, body["description"][:120]))
