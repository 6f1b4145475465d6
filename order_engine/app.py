"""The Flask application factory: settings, extensions, blueprints and error handlers."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from order_engine.config import Settings
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
    return app
