"""Order Engine: an order execution backend for Solana swaps."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask

from order_engine.config import Settings


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Create the Flask app. `test_config` overlays environment-style settings (tests)."""
    from order_engine import db
    from order_engine.api import register_blueprints
    from order_engine.errors import register_error_handlers
    from order_engine.extensions import sock
    from order_engine.tasking import celery_init_app

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
        JSON_SORT_KEYS=False,
    )
    from order_engine.jsonio import MoneyJSONProvider

    app.json = MoneyJSONProvider(app)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    db.init_app(app)
    sock.init_app(app)
    celery_init_app(app)
    register_error_handlers(app)
    register_blueprints(app)
    return app
