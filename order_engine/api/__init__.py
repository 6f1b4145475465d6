"""HTTP and WebSocket endpoints. Views load a schema, call one service, dump a schema."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from order_engine.api import access, body
    from order_engine.api import metrics as metrics_api
    from order_engine.api.dashboard import bp as dashboard_bp
    from order_engine.api.docs import bp as docs_bp
    from order_engine.api.export import bp as export_bp
    from order_engine.api.health import bp as health_bp
    from order_engine.api.orders import bp as orders_bp
    from order_engine.api.ws import bp as streams_bp

    metrics_api.init_app(app)  # its clock starts before the guard, so refusals are timed
    access.init_app(app)  # its guard runs before every other hook and view
    body.init_app(app)  # so a body is read only once its caller is let through
    app.register_blueprint(docs_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(export_bp)
    app.register_blueprint(orders_bp)
    app.register_blueprint(streams_bp)
    app.register_blueprint(dashboard_bp)
