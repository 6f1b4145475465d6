"""The Flask application factory: settings, extensions, blueprints and error handlers."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

from flask import Flask

from order_engine.config import Settings
from order_engine.errors import envelope
from order_engine.infra import logs


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Create the Flask app. `test_config` overlays environment-style settings (tests)."""
    from order_engine.api import register_blueprints
    from order_engine.api.sock import sock
    from order_engine.errors import register_error_handlers
    from order_engine.infra import db
    from order_engine.tasking.app import celery_init_app

    if test_config is None:
        settings = Settings.from_env()
    else:
        from order_engine.config import _process_environment

        settings = Settings.from_env({**_process_environment(), **test_config})

    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SOCK_SERVER_OPTIONS={
            "ping_interval": settings.ws_ping_interval_s or None,
            "max_message_size": settings.max_body_bytes,
        },
    )
    from order_engine.schemas.jsonio import MoneyJSONProvider

    app.json = MoneyJSONProvider(app)
    logs.configure(settings.log_level, settings.log_format)
    # Ids bound while serving a request must not leak into the next one on this greenlet.
    app.teardown_request(lambda _exc: logs.clear())
    db.init_app(app)
    sock.init_app(app)
    celery_init_app(app)
    register_error_handlers(app)
    register_blueprints(app)
    app.wsgi_app = BoundedChunkedInput(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_body_bytes
    )
    return app


class BoundedChunkedInput:
    """Read a chunked request body here, up to the body limit, and hand the app a body of
    known length; a longer one is a 413 envelope like any other oversized body.

    gunicorn decodes chunked bodies, but Werkzeug's limit on such a stream silently stops at
    MAX_CONTENT_LENGTH bytes: an oversized chunked order was cut short and came back as a 400
    "not JSON" instead of a 413."""

    def __init__(self, wsgi_app: Any, max_bytes: int) -> None:
        self.wsgi_app = wsgi_app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(self.max_bytes + 1)
            if len(body) > self.max_bytes:
                payload = json.dumps(
                    envelope(
                        413,
                        "Request Entity Too Large",
                        f"The body is larger than {self.max_bytes} bytes.",
                    )
                ).encode()
                start_response(
                    "413 Request Entity Too Large",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(payload))),
                        ("Connection", "close"),
                    ],
                )
                return [payload]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]
        return self.wsgi_app(environ, start_response)
