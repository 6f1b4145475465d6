"""REST endpoints for orders. Each view: parse and validate, call one service, dump."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.routing import BaseConverter

from order_engine import jsonio
from order_engine.api.access import current_principal, requires
from order_engine.db import get_session
from order_engine.errors import (
    BadRequestError,
    NotFoundError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    UpgradeRequiredError,
)
from order_engine.events import app_publisher, event_payload
from order_engine.schemas.order import OrderCreateSchema, OrderListQuerySchema, OrderSchema
from order_engine.services.order import OrderService, SubmittedOrder

bp = Blueprint("orders", __name__, url_prefix="/api/orders")


class OrderIdConverter(BaseConverter):
    """Any path segment but `execute`: `DELETE /api/orders/execute` is then a 405 naming the
    methods that path has, not a 404 for an order called "execute"."""

    regex = r"(?!execute(?:/|$))[^/]+"


@bp.record_once
def _register_converter(state: Any) -> None:
    state.app.url_map.converters.setdefault("order_id", OrderIdConverter)


order_schema = OrderSchema()
create_schema = OrderCreateSchema()
list_query_schema = OrderListQuerySchema()
IDEMPOTENCY_KEY_MAX = 255


def order_service() -> OrderService:
    return OrderService(get_session(), app_publisher())


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


def parse_submission(
    raw_body: str | bytes, raw_key: str | None
) -> tuple[dict[str, Any], str | None]:
    """The one validation path of an order submission, REST or WebSocket: the body (400 / 422)
    and the Idempotency-Key (422)."""
    order_data = parse_order_body(raw_body)
    return order_data, validate_idempotency_key(raw_key)


def submit(order_data: dict[str, Any], key: str | None) -> SubmittedOrder:
    """Submit for the caller's account, within its in-flight cap (REST and WebSocket)."""
    settings = current_app.config["SETTINGS"]
    return order_service().submit(
        order_data,
        key,
        account_id=current_principal().account_id,
        max_in_flight=settings.max_orders_in_flight,
    )


def owner_filter() -> uuid.UUID | None:
    """The account whose orders the caller may see; None for an admin key (all accounts)."""
    principal = current_principal()
    return None if "admin" in principal.scopes else principal.account_id


def parse_order_id(raw: str | uuid.UUID) -> uuid.UUID:
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFoundError(f"{raw!r} is not an order id (a UUID).") from None


def order_links(order_id: str) -> dict[str, str]:
    """Links from the configured PUBLIC_BASE_URL: never from the request's Host header, which
    the client chooses."""
    settings = current_app.config["SETTINGS"]
    return {
        "self": f"{settings.public_base_url}/api/orders/{order_id}",
        "ws": f"{settings.public_ws_url}/api/orders/execute?orderId={order_id}",
    }


def submitted_body(submitted: SubmittedOrder) -> dict[str, Any]:
    order_id = str(submitted.order.id)
    return {
        "orderId": order_id,
        "status": submitted.order.status,
        "links": order_links(order_id),
    }


@bp.post("/execute")
@requires("orders:write")
def execute_order() -> tuple[Response, int, dict[str, str]]:
    """Submit a market order; 202 with its id and links, then follow it over the WebSocket."""
    if not request.is_json:
        raise UnsupportedMediaTypeError("Send the order as JSON (Content-Type: application/json).")
    order_data, key = parse_submission(request.get_data(), request.headers.get("Idempotency-Key"))
    submitted = submit(order_data, key)
    headers = {"Location": f"/api/orders/{submitted.order.id}"}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(submitted_body(submitted)), 202, headers


@bp.get("/execute")
@bp.get("/execute/ws")
@requires("orders:read")
def execute_without_upgrade() -> Response:
    """The streaming paths answer only WebSocket handshakes; say how to use them."""
    raise UpgradeRequiredError(
        "This path is the order WebSocket: connect with a WebSocket client to "
        "ws://<host>/api/orders/execute?orderId=<id> to follow an order, or without orderId and "
        "send the order body as the first message; POST /api/orders/execute submits an order "
        "over HTTP, and GET /api/orders/<id> reads one."
    )


def idempotency_key() -> str | None:
    return validate_idempotency_key(request.headers.get("Idempotency-Key"))


def validate_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise UnprocessableError(
            "Invalid Idempotency-Key.",
            errors={"Idempotency-Key": [f"Must be 1-{IDEMPOTENCY_KEY_MAX} printable characters."]},
        )
    return key


@bp.get("/<order_id:order_id>")
@requires("orders:read")
def get_order(order_id: str) -> Response:
    """One order with its full event history."""
    found = order_service().get(parse_order_id(order_id), owner_filter())
    body = order_schema.dump(found.order)
    body["events"] = [event_payload(e) for e in found.events]
    return jsonify(body)


@bp.get("")
@requires("orders:read")
def list_orders() -> Response:
    """Orders, newest first, filtered by status/type/creation time, with a cursor."""
    args: dict[str, Any] = {}
    for name, values in request.args.lists():
        if name in {"status", "type"}:
            # An empty value (`?status=`) is refused by the schema, not read as "no filter".
            args[name] = [v for value in values for v in value.split(",")]
        else:
            args[name] = values[-1]
    try:
        query = list_query_schema.load(args)
    except ValidationError as exc:
        raise UnprocessableError("Invalid query.", errors=_flatten(exc.messages)) from None
    orders, cursor = order_service().list(query, owner_filter())
    body: dict[str, Any] = {"orders": order_schema.dump(orders, many=True), "nextCursor": cursor}
    if cursor:
        params = {k: ",".join(v) if isinstance(v, list) else v for k, v in args.items()}
        params["cursor"] = cursor
        base = current_app.config["SETTINGS"].public_base_url
        body["links"] = {"next": f"{base}/api/orders?{urlencode(params)}"}
    return jsonify(body)


@bp.delete("/<order_id:order_id>")
@requires("orders:write")
def cancel_order(order_id: str) -> Response:
    """Cancel an order whose swap transaction has not been built (409 otherwise)."""
    order = order_service().cancel(parse_order_id(order_id), owner_filter())
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
