"""REST endpoints for orders. Each view: parse and validate, call one service, dump."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.routing import BaseConverter

from order_engine.api.access import requires
from order_engine.api.intake import order_service, owner_filter, submit_order
from order_engine.errors import (
    NotFoundError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    UpgradeRequiredError,
    field_errors,
)
from order_engine.live.events import event_payload
from order_engine.schemas.order import OrderListQuerySchema
from order_engine.schemas.order_view import OrderSchema
from order_engine.schemas.twap import TwapSchema, TwapView
from order_engine.services.order import SubmittedOrder

bp = Blueprint("orders", __name__, url_prefix="/api/orders")


class OrderIdConverter(BaseConverter):
    """Any path segment but `execute` and `export`: `DELETE /api/orders/execute` is then a 405
    naming the methods that path has, not a 404 for an order called "execute"."""

    regex = r"(?!(?:execute|export)(?:/|$))[^/]+"


@bp.record_once
def _register_converter(state: Any) -> None:
    state.app.url_map.converters.setdefault("order_id", OrderIdConverter)


order_schema = OrderSchema()
twap_schema = TwapSchema()
list_query_schema = OrderListQuerySchema()


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
    """Submit an order; 202 with its id and links, then follow it over the WebSocket.
    ---
    post:
      operationId: submitOrder
      summary: Submit an order (market, limit, sniper, stop, oco, trailing_stop or twap)
      description: >-
        Returns 202 at once; follow the order with a WebSocket upgrade on
        GET /api/orders/execute?orderId=<id>. Events: pending, routing,
        building, submitted, confirmed | failed. Every type but market and twap
        waits (its first event's `waitingFor`) until the engine's net quote for
        its whole amount meets it: limit (limitPrice or above), sniper (its
        mint's pool appears), stop (triggerPrice or below), oco (takeProfit or
        stopLoss, the stop when both; events name the `leg`), trailing_stop
        (trailBps below its peak; `peakPrice`, `triggerLevel`). A twap parent
        (slices, intervalS, optional limitPrice) runs `slices` child market
        orders, slice k due k × intervalS after acceptance, and ends confirmed
        when every slice filled, else failed (TWAP_PARTIALLY_FILLED,
        TWAP_NOT_FILLED). docs/api.md has each. A waiting order may expire:
        expiresAt, or expiresIn ("90s", "1h", "7d").
      parameters:
        - name: Idempotency-Key
          in: header
          required: false
          schema: {type: string, maxLength: 255}
      requestBody:
        required: true
        content:
          application/json:
            schema: OrderCreate
      responses:
        "202":
          description: Accepted
          links:
            GetOrder:
              operationId: getOrder
              parameters: {order_id: "$response.body#/orderId"}
            CancelOrder:
              operationId: cancelOrder
              parameters: {order_id: "$response.body#/orderId"}
          content:
            application/json:
              schema: OrderAccepted
        "400": BadRequest
        "401": Unauthorized
        "403": Forbidden
        "408": RequestTimeout
        "413": PayloadTooLarge
        "415": UnsupportedMediaType
        "422": Unprocessable
        "429": TooManyRequests
        "503": Unavailable
    """
    if not request.is_json:
        raise UnsupportedMediaTypeError("Send the order as JSON (Content-Type: application/json).")
    submitted = submit_order(request.get_data(), request.headers.get("Idempotency-Key"))
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


@bp.get("/<order_id:order_id>")
@requires("orders:read")
def get_order(order_id: str) -> Response:
    """One order with its full event history (a TWAP parent's also with its children).
    ---
    get:
      operationId: getOrder
      summary: An order with all its events
      description: >-
        A TWAP parent also has `twap`: its schedule, each child order (a slice,
        with its own id, txHash and stream), what they filled, the average price
        and what remains. A child names its parent (`parentId`, `sliceIndex`).
      parameters: [OrderId]
      responses:
        "200":
          description: The order
          content:
            application/json:
              schema: OrderWithEvents
        "401": Unauthorized
        "403": Forbidden
        "404": NotFound
        "429": TooManyRequests
    """
    found = order_service().get(parse_order_id(order_id), owner_filter())
    body = order_schema.dump(found.order)
    body["events"] = [event_payload(e) for e in found.events]
    if found.order.slices is not None:
        body["twap"] = twap_schema.dump(TwapView(found.order, found.children))
    return jsonify(body)


@bp.get("")
@requires("orders:read")
def list_orders() -> Response:
    """Orders, newest first, filtered by status/type/creation time, with a cursor.
    ---
    get:
      summary: List orders, newest first
      parameters:
        - in: query
          schema: OrderListQuerySchema
      responses:
        "200":
          description: A page of orders (the caller's account's)
          content:
            application/json:
              schema: OrderPage
        "401": Unauthorized
        "403": Forbidden
        "422": Unprocessable
        "429": TooManyRequests
    """
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
        raise UnprocessableError("Invalid query.", errors=field_errors(exc.messages)) from None
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
    """Cancel an order whose swap transaction has not been built (409 otherwise).
    ---
    delete:
      operationId: cancelOrder
      summary: Cancel an order whose swap transaction has not been built
      description: >-
        Wins while the order is pending or routing and no transaction was ever
        built for it: the worker then stops without sending anything. From
        building on (or on a retry whose earlier transaction may still land) the
        answer is 409 with the reason.
      parameters: [OrderId]
      responses:
        "200":
          description: Cancelled
          content:
            application/json:
              schema: Order
        "401": Unauthorized
        "403": Forbidden
        "404": NotFound
        "409": Conflict
        "429": TooManyRequests
    """
    order = order_service().cancel(parse_order_id(order_id), owner_filter())
    return jsonify(order_schema.dump(order))
