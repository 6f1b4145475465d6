"""REST endpoints for orders. Each view: parse and validate, call one service, dump."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from marshmallow import ValidationError

from order_engine import jsonio
from order_engine.db import get_session
from order_engine.errors import (
    BadRequestError,
    NotFoundError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    UpgradeRequiredError,
)
from order_engine.events import EventPublisher, event_payload
from order_engine.redis_client import get_redis
from order_engine.schemas.order import OrderCreateSchema, OrderListQuerySchema, OrderSchema
from order_engine.services.order import OrderService, SubmittedOrder

bp = Blueprint("orders", __name__, url_prefix="/api/orders")

order_schema = OrderSchema()
create_schema = OrderCreateSchema()
list_query_schema = OrderListQuerySchema()
IDEMPOTENCY_KEY_MAX = 255


def order_service() -> OrderService:
    settings = current_app.config["SETTINGS"]
    return OrderService(get_session(), EventPublisher(get_redis(), settings.active_order_ttl_s))


def parse_order_body(raw: str | bytes) -> dict[str, Any]:
    """Decode and validate an order body; raises 400 (malformed) or 422 (invalid fields)."""
    try:
        body = jsonio.loads(raw)
    except ValueError as exc:
        raise BadRequestError(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise BadRequestError("The body must be a JSON object.")
    try:
        return create_schema.load(body)
    except ValidationError as exc:
        raise UnprocessableError(
            "The order has invalid fields.", errors=_flatten(exc.messages)
        ) from None


def parse_order_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFoundError(f"{raw!r} is not an order id (a UUID).") from None


def submitted_body(submitted: SubmittedOrder) -> dict[str, Any]:
    order_id = str(submitted.order.id)
    ws_base = "ws" + request.host_url.rstrip("/").removeprefix("http")
    return {
        "orderId": order_id,
        "status": submitted.order.status,
        "links": {
            "self": url_for("orders.get_order", order_id=order_id, _external=True),
            "ws": f"{ws_base}/api/orders/execute?orderId={order_id}",
        },
    }


@bp.post("/execute")
def execute_order() -> tuple[Response, int, dict[str, str]]:
    """Submit a market order; 202 with its id and links, then follow it over the WebSocket."""
    if not request.is_json:
        raise UnsupportedMediaTypeError("Send the order as JSON (Content-Type: application/json).")
    order_data = parse_order_body(request.get_data())
    key = idempotency_key()
    submitted = order_service().submit(order_data, key)
    headers = {"Location": url_for("orders.get_order", order_id=str(submitted.order.id))}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(submitted_body(submitted)), 202, headers


@bp.get("/execute")
@bp.get("/execute/ws")
def execute_without_upgrade() -> Response:
    """The streaming paths answer only WebSocket handshakes; say how to use them."""
    raise UpgradeRequiredError(
        "This path is the order WebSocket: connect with a WebSocket client to "
        "ws://<host>/api/orders/execute?orderId=<id> to follow an order, or without orderId and "
        "send the order body as the first message; POST /api/orders/execute submits an order "
        "over HTTP, and GET /api/orders/<id> reads one."
    )


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise UnprocessableError(
            "Invalid Idempotency-Key.",
            errors={"Idempotency-Key": [f"Must be 1-{IDEMPOTENCY_KEY_MAX} printable characters."]},
        )
    return key


@bp.get("/<order_id>")
def get_order(order_id: str) -> Response:
    """One order with its full event history."""
    found = order_service().get(parse_order_id(order_id))
    body = order_schema.dump(found.order)
    body["events"] = [event_payload(e) for e in found.events]
    return jsonify(body)


@bp.get("")
def list_orders() -> Response:
    """Orders, newest first, filtered by status/type/creation time, with a cursor."""
    args: dict[str, Any] = {}
    for name, values in request.args.lists():
        if name in {"status", "type"}:
            args[name] = [v for value in values for v in value.split(",") if v]
        else:
            args[name] = values[-1]
    try:
        query = list_query_schema.load(args)
    except ValidationError as exc:
        raise UnprocessableError("Invalid query.", errors=_flatten(exc.messages)) from None
    orders, cursor = order_service().list(query)
    body: dict[str, Any] = {"orders": order_schema.dump(orders, many=True), "nextCursor": cursor}
    if cursor:
        body["links"] = {"next": url_for("orders.list_orders", **{**args, "cursor": cursor})}
    return jsonify(body)


@bp.delete("/<order_id>")
def cancel_order(order_id: str) -> Response:
    """Cancel an order whose swap transaction has not been built (409 otherwise)."""
    order = order_service().cancel(parse_order_id(order_id))
    return jsonify(order_schema.dump(order))


def _flatten(messages: Any) -> dict[str, list[str]]:
    """marshmallow nests list errors by index; the envelope wants field -> [reasons]."""
    if not isinstance(messages, dict):
        return {"_schema": [str(messages)]}
    flat: dict[str, list[str]] = {}
    for field, value in messages.items():
        if isinstance(value, dict):
            flat[field] = [
                str(m) for v in value.values() for m in (v if isinstance(v, list) else [v])
            ]
        else:
            flat[field] = [str(m) for m in (value if isinstance(value, list) else [value])]
    return flat
