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

from order_engine.schemas.order import (
    EventSchema,
    ExactAmount,
    OrderCreateSchema,
    OrderListQuerySchema,
    OrderSchema,
    TokenField,
)

bp = Blueprint("docs", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed JSON",
        404: "No such order",
        409: "Illegal transition",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid field (see errors)",
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
    spec.components.schema("OrderCreate", schema=OrderCreateSchema)
    spec.components.schema("Order", schema=OrderSchema)
    spec.components.schema("Event", schema=EventSchema)
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
                "responses": {
                    "202": {
                        "description": "Accepted",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "orderId": {"type": "string", "format": "uuid"},
                                        "status": {"type": "string", "enum": ["pending"]},
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
                    **_error_responses(400, 413, 415, 422, 503),
                },
            },
            "get": {
                "summary": "WebSocket: stream an order, or submit one as the first message",
                "description": "Upgrade to WebSocket. With ?orderId= the server sends every event "
                "of that order once, in seq order, then closes with 1000 after the "
                "terminal one. Without it, send an OrderCreate body first. Errors: "
                "a JSON error message, then close 4400 (bad id/body), 4404 (unknown "
                "order) or 1011 (dependency down).",
                "parameters": [
                    {
                        "name": "orderId",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": {
                    "101": {
                        "description": "Switching protocols; messages are Events",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Event"}}
                        },
                    }
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
                        "description": "A page of orders",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "orders": {"type": "array", "items": order_ref},
                                        "nextCursor": {"type": "string", "nullable": True},
                                    },
                                }
                            }
                        },
                    },
                    **_error_responses(422),
                },
            }
        },
    )
    spec.path(
        "/api/orders/{order_id}",
        operations={
            "get": {
                "summary": "An order with all its events",
                "parameters": [id_param],
                "responses": {
                    "200": {
                        "description": "The order",
                        "content": {"application/json": {"schema": order_ref}},
                    },
                    **_error_responses(404),
                },
            },
            "delete": {
                "summary": "Cancel an order whose swap transaction has not been built",
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
                    **_error_responses(404, 409),
                },
            },
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
    return spec.to_dict()


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
