"""HTTP and WebSocket endpoints. Views load a schema, call one service, dump a schema."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from order_engine.api.health import bp as health_bp

    app.register_blueprint(health_bp)
