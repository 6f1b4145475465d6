"""The OpenAPI document, generated from the views, and Swagger UI rendering it at /api/docs.

Each documented view declares its own operation in its docstring, a YAML block after `---`
beside its code, naming the marshmallow schemas it loads and dumps; apispec-webframeworks'
`FlaskPlugin` reads the view's path from the app's URL map and that block, and apispec's
`MarshmallowPlugin` turns the schemas into JSON Schema. Here are only the names the blocks
refer to (the schemas', the error envelope's responses, the order-id parameter) and the
security scheme. Chosen over flask-smorest and APIFairy, which document a view only once their
decorators load its body, answer its errors (their own 422 envelope) and own its blueprint;
this reads the views as they are.

Swagger UI's files come from the `swagger-ui-bundle` package and are served by this app: no
CDN, so the page works offline.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from marshmallow import fields
from swagger_ui_bundle import swagger_ui_path

from order_engine.schemas.access import StreamTicketSchema
from order_engine.schemas.order import ExactAmount, OrderCreateSchema, TokenField
from order_engine.schemas.order_view import (
    EventSchema,
    OrderAcceptedSchema,
    OrderPageSchema,
    OrderSchema,
    OrderWithEventsSchema,
)

bp = Blueprint("docs", __name__)

# The error envelope every refusal answers with (`errors.envelope`), and why each status is
# answered; a view's block names these (`"422": Unprocessable`).
ERROR_ENVELOPE = {
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
}
ERROR_RESPONSES = {
    "BadRequest": "Malformed JSON",
    "Unauthorized": "No API key, or not a valid one",
    "Forbidden": "The API key lacks the scope this needs",
    "NotFound": "No such order (another account's orders included)",
    "Conflict": "Illegal transition",
    "RequestTimeout": "The body did not arrive within BODY_TIMEOUT_S",
    "PayloadTooLarge": "Body too large",
    "UnsupportedMediaType": "Not JSON, or a Content-Encoding other than identity",
    "Unprocessable": "Invalid field (see errors)",
    "UpgradeRequired": "Not a WebSocket handshake: this path streams orders over a WebSocket",
    "TooManyRequests": "Rate limited, or the account's orders in flight / WebSockets are at "
    "their cap, or this address is sending too many bodies at once (Retry-After says when to "
    "retry)",
    "Unavailable": "A dependency is down; retry (safe with the same Idempotency-Key)",
}


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3 document of `app`: every view whose docstring declares an operation."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title="Order Engine",
        version="0.1.0",
        openapi_version="3.0.3",
        plugins=[FlaskPlugin(), marshmallow],
        info={
            "description": "Swap orders on Solana, routed between Raydium and Meteora, "
            "with live status over WebSocket."
        },
        security=[{"apiKey": []}],  # every operation but those that say `security: []`
    )
    marshmallow.map_to_openapi_type(ExactAmount, "string", "decimal")
    marshmallow.map_to_openapi_type(TokenField, "string", None)
    assert marshmallow.converter is not None  # set by APISpec's plugin init
    marshmallow.converter.add_attribute_function(_alternatives)
    _add_components(spec, app.config["SETTINGS"].limit_max_horizon_s)
    for view in app.view_functions.values():
        if load_operations_from_docstring(view.__doc__ or ""):
            spec.path(view=view, app=app)
    return spec.to_dict()


def _add_components(spec: APISpec, limit_max_horizon_s: int) -> None:
    spec.components.schema(
        "OrderCreate", schema=OrderCreateSchema(limit_max_horizon_s=limit_max_horizon_s)
    )
    spec.components.schema("Order", schema=OrderSchema)
    spec.components.schema("Event", schema=EventSchema)
    spec.components.schema("OrderWithEvents", schema=OrderWithEventsSchema)
    spec.components.schema("OrderAccepted", schema=OrderAcceptedSchema)
    spec.components.schema("OrderPage", schema=OrderPageSchema)
    spec.components.schema("StreamTicket", schema=StreamTicketSchema)
    spec.components.schema("Error", ERROR_ENVELOPE)
    for name, reason in ERROR_RESPONSES.items():
        spec.components.response(
            name, {"description": reason, "content": {"application/json": {"schema": "Error"}}}
        )
    spec.components.parameter(
        "OrderId", "path", {"name": "order_id", "schema": {"type": "string", "format": "uuid"}}
    )
    spec.components.security_scheme(
        "apiKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `order-engine keys create`.",
        },
    )


def _alternatives(
    self: Any, field: fields.Field, ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """A field documented with `anyOf` (an order's amount: a decimal string or a plain JSON
    number) has no one type of its own: the alternatives carry theirs."""
    if "anyOf" in field.metadata:
        ret.pop("type", None)
        ret.pop("format", None)
    return {}


@bp.get("/api/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of this API (built once per app)."""
    document = current_app.extensions.get("order_engine.openapi")
    if document is None:
        document = current_app.extensions["order_engine.openapi"] = build_spec(current_app)
    return jsonify(document)


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
