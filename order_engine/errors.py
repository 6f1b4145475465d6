"""Error types and the single JSON error envelope of every non-2xx response.

Body: `{"code": <http status>, "message": <short title>, "description": <sentence>,
"errors": {<field>: [<reason>, ...]}}` (docs/api.md, "Errors"). The status comes from the exception
class.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class OrderEngineError(Exception):
    """Base of the errors a client can cause or must be told about."""

    status = 500
    message = "Internal Server Error"

    def __init__(
        self,
        description: str,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.errors = errors or {}
        self.headers = headers or {}


class BadRequestError(OrderEngineError):
    status, message = 400, "Bad Request"


class ClientGoneError(OrderEngineError):
    """The client closed or reset its connection before it was answered: nothing the server
    did wrong, so nothing is logged (its answer reaches nobody)."""

    status, message = 400, "Bad Request"


class UnauthorizedError(OrderEngineError):
    status, message = 401, "Unauthorized"

    def __init__(self, description: str) -> None:
        super().__init__(description, headers={"WWW-Authenticate": 'Bearer realm="order-engine"'})


class ForbiddenError(OrderEngineError):
    status, message = 403, "Forbidden"


class NotFoundError(OrderEngineError):
    status, message = 404, "Not Found"


class ConflictError(OrderEngineError):
    status, message = 409, "Conflict"


class RequestTimeoutError(OrderEngineError):
    status, message = 408, "Request Timeout"


class PayloadTooLargeError(OrderEngineError):
    status, message = 413, "Request Entity Too Large"


class UpgradeRequiredError(OrderEngineError):
    status, message = 426, "Upgrade Required"

    def __init__(self, description: str) -> None:
        super().__init__(description, headers={"Upgrade": "websocket", "Connection": "Upgrade"})


class UnsupportedMediaTypeError(OrderEngineError):
    status, message = 415, "Unsupported Media Type"


class UnprocessableError(OrderEngineError):
    status, message = 422, "Unprocessable Entity"


class TooManyRequestsError(OrderEngineError):
    status, message = 429, "Too Many Requests"


class DependencyUnavailableError(OrderEngineError):
    status, message = 503, "Service Unavailable"

    def __init__(self, description: str, retry_after_s: int = 2) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after_s)})


def envelope(
    code: int, message: str, description: str, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The error body, the one shape of every refusal: REST answers, the WebSocket's last
    message before it closes, the readiness probe, and what gunicorn answers itself."""
    body: dict[str, Any] = {"code": code, "message": message, "description": description}
    if errors:
        body["errors"] = errors
    return body


def error_response(
    status: int,
    message: str,
    description: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(envelope(status, message, description, errors))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_errors(messages: Any) -> dict[str, list[str]]:
    """marshmallow's messages as the envelope's `errors`, field -> [reasons] (marshmallow
    nests a list's errors by index)."""
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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(OrderEngineError)
    def handle_engine_error(error: OrderEngineError) -> Response:
        return error_response(
            error.status, error.message, error.description, error.errors, error.headers
        )

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        headers = {}
        if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return error_response(
            error.code or 500, error.name, error.description or error.name, headers=headers
        )

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        # Infrastructure failures a client can retry get a 503, never a 500 with internals.
        unavailable = _dependency_name(error)
        if unavailable:
            log.warning("dependency unavailable: %s: %s", unavailable, error)
            return error_response(
                503,
                "Service Unavailable",
                f"{unavailable} is unavailable; retry shortly (safe with the same Idempotency-Key)",
                headers={"Retry-After": "2"},
            )
        log.exception("unhandled error")
        return error_response(500, "Internal Server Error", "An unexpected error occurred.")


def _dependency_name(error: Exception) -> str | None:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "PostgreSQL"
    if isinstance(error, PoolTimeoutError):
        return "PostgreSQL"
    if isinstance(error, DBAPIError) and type(error.orig).__name__ == "OperationalError":
        return "PostgreSQL"
    if isinstance(error, RedisConnectionError | RedisTimeoutError):
        return "Redis"
    if isinstance(error, KombuOperationalError):
        return "The task broker"
    return None
