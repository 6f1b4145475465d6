"""The OpenAPI document, generated from the same marshmallow schemas the API validates with,
and Swagger UI rendering it at /api/docs. Swagger UI's files come from the `swagger-ui-bundle`
package and are served by this app: no CDN, so the page works offline."""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from order_engine.models import OrderStatus
from order_engine.schemas.order import (
    EventSchema,
    ExactAmount,
    OrderCreateSchema,
    OrderListQuerySchema,
    OrderSchema,
    OrderWithEventsSchema,
    TokenField,
)

STREAM_PARAMETERS = [
    {
        "name": "orderId",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "uuid"},
        "description": "The order to follow; without it, the first message is an order body.",
    },
    {
        "name": "afterSeq",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
        "description": "Resume: only events after this seq.",
    },
    {
        "name": "ticket",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "A one-use ticket from POST /api/stream-tickets (browsers).",
    },
]

bp = Blueprint("docs", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed JSON",
        401: "No API key, or not a valid one",
        403: "The API key lacks the scope this needs",
        404: "No such order (another account's orders included)",
        409: "Illegal transition",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid field (see errors)",
        426: "Not a WebSocket handshake: this path streams orders over a WebSocket",
        429: "Rate limited, or the account's orders in flight / WebSockets are at their cap "
        "(Retry-After says when to retry)",
        503: "A dependency is down; retry (safe with the same Idempotency-Key)",
    }
    return {
        str(code): {
            "description": reasons[code],
            "content": {"application/json": {"schema": ERROR}},
        }
        for code in codes
    }


@cache
def build_spec() -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Order Engine",
        version="0.1.0",
        openapi_version="3.0.3",
        plugins=[plugin],
        info={
            "description": "Swap orders on Solana, routed between Raydium and Meteora, "
            "with live status over WebSocket."
        },
    )
    plugin.map_to_openapi_type(ExactAmount, "string", "decimal")
    plugin.map_to_openapi_type(TokenField, "string", None)
    # The horizon bounds a value, not the shape: it does not show in the document.
    spec.components.schema("OrderCreate", schema=OrderCreateSchema(limit_max_horizon_s=1))
    spec.components.schema("Order", schema=OrderSchema)
    spec.components.schema("Event", schema=EventSchema)
    spec.components.schema("OrderWithEvents", schema=OrderWithEventsSchema)
    spec.components.security_scheme(
        "apiKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `order-engine keys create` (DESIGN §9).",
        },
    )
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "description": {"type": "string"},
                "errors": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message", "description"],
        },
    )
    order_ref = {"$ref": "#/components/schemas/Order"}
    id_param = {
        "name": "order_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    spec.path(
        "/api/orders/execute",
        operations={
            "post": {
                "summary": "Submit a market order",
                "description": "Returns 202 at once; follow the order with a WebSocket upgrade on "
                "GET /api/orders/execute?orderId=<id>. Events: pending, routing, "
                "building, submitted, confirmed | failed.",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/OrderCreate"}}
                    },
                },
                "operationId": "submitOrder",
                "responses": {
                    "202": {
                        "description": "Accepted",
                        "links": {
                            "GetOrder": {
                                "operationId": "getOrder",
                                "parameters": {"order_id": "$response.body#/orderId"},
                            },
                            "CancelOrder": {
                                "operationId": "cancelOrder",
                                "parameters": {"order_id": "$response.body#/orderId"},
                            },
                        },
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "orderId": {"type": "string", "format": "uuid"},
                                        # A replay (same Idempotency-Key) answers
                                        # with the order's current status.
                                        "status": {
                                            "type": "string",
                                            "enum": [s.value for s in OrderStatus],
                                        },
                                        "links": {
                                            "type": "object",
                                            "properties": {
                                                "self": {"type": "string"},
                                                "ws": {"type": "string"},
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_error_responses(400, 401, 403, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "WebSocket: stream an order, or submit one as the first message",
                "description": "Upgrade to WebSocket. With ?orderId= the server sends every event "
                "of that order once, in seq order, then closes with 1000 after the "
                "terminal one. Without it, send an OrderCreate body first. Errors: "
                "a JSON error message, then close 4400 (bad id/body), 4404 (unknown "
                "order) or 1011 (dependency down).",
                "parameters": STREAM_PARAMETERS,
                "responses": {
                    "101": {
                        "description": "Switching protocols; messages are Events",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Event"}}
                        },
                    },
                    **_error_responses(401, 403, 426, 429),
                },
            },
        },
    )
    spec.path(
        "/api/orders",
        operations={
            "get": {
                "summary": "List orders, newest first",
                "parameters": [{"in": "query", "schema": OrderListQuerySchema}],
                "responses": {
                    "200": {
                        "description": "A page of orders (the caller's account's)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "orders": {"type": "array", "items": order_ref},
                                        "nextCursor": {"type": "string", "nullable": True},
                                        "links": {
                                            "type": "object",
                                            "properties": {"next": {"type": "string"}},
                                        },
                                    },
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    **_error_responses(401, 403, 422, 429),
                },
            }
        },
    )
    spec.path(
        "/api/orders/{order_id}",
        operations={
            "get": {
                "summary": "An order with all its events",
                "operationId": "getOrder",
                "parameters": [id_param],
                "responses": {
                    "200": {
                        "description": "The order",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/OrderWithEvents"}
                            }
                        },
                    },
                    **_error_responses(401, 403, 404, 429),
                },
            },
            "delete": {
                "summary": "Cancel an order whose swap transaction has not been built",
                "operationId": "cancelOrder",
                "description": (
                    "Wins while the order is pending or routing and no transaction was ever "
                    "built for it: the worker then stops without sending anything. From "
                    "building on (or on a retry whose earlier transaction may still land) the "
                    "answer is 409 with the reason."
                ),
                "parameters": [id_param],
                "responses": {
                    "200": {
                        "description": "Cancelled",
                        "content": {"application/json": {"schema": order_ref}},
                    },
                    **_error_responses(401, 403, 404, 409, 429),
                },
            },
        },
    )
    spec.path(
        "/api/stream-tickets",
        operations={
            "post": {
                "summary": "A one-use stream ticket for a browser's WebSocket",
                "description": "Browsers cannot set headers on a WebSocket: open it with "
                "?ticket=<ticket> (plus orderId, afterSeq) within expiresInS seconds. The "
                "ticket stands for this key, once.",
                "responses": {
                    "201": {
                        "description": "The ticket",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "ticket": {"type": "string"},
                                        "expiresInS": {"type": "integer"},
                                        "ws": {"type": "string"},
                                    },
                                    "required": ["ticket", "expiresInS", "ws"],
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    **_error_responses(401, 403, 429, 503),
                },
            }
        },
    )
    spec.path(
        "/healthz",
        operations={
            "get": {"summary": "Process is up", "responses": {"200": {"description": "ok"}}}
        },
    )
    spec.path(
        "/readyz",
        operations={
            "get": {
                "summary": "PostgreSQL and Redis reachable",
                "responses": {"200": {"description": "ready"}, **_error_responses(503)},
            }
        },
    )
    spec.path(
        "/metrics",
        operations={
            "get": {
                "summary": "Prometheus metrics of every process of the host",
                "description": "Open to requests from the host itself (loopback, not relayed "
                "by a proxy); anyone else needs a key with the `admin` scope (Bearer, or HTTP "
                "Basic with the key as the password). Series: see the README, Observability.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_error_responses(401, 403),
                },
            }
        },
    )
    document = spec.to_dict()
    # What the amount field really accepts: a decimal string, or a plain JSON number (exact).
    document["components"]["schemas"]["OrderCreate"]["properties"]["amount"] = {
        "description": "amount of tokenIn to sell: a decimal string (or a plain JSON number)",
        "example": "1.5",
        "anyOf": [
            {"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,30}(\.[0-9]{1,30})?$"},
            {"type": "number", "exclusiveMinimum": True, "minimum": 0},
        ],
    }
    document["security"] = [{"apiKey": []}]
    for path in ("/healthz", "/readyz", "/metrics"):  # no key (/metrics: on loopback)
        document["paths"][path]["get"]["security"] = []
    return document


@bp.get("/api/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of this API."""
    return jsonify(build_spec())


@bp.get("/api/docs")
def browsable() -> Response:
    """Swagger UI: every operation with its parameters, bodies and responses; try-it-out."""
    return Response(_PAGE, mimetype="text/html")


@bp.get("/api/docs/assets/<path:filename>")
def docs_asset(filename: str) -> Response:
    """Swagger UI's own files, from the installed package."""
    return send_from_directory(swagger_ui_path, filename, max_age=3600)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Order Engine API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/assets/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
});
</script></body></html>
"""
