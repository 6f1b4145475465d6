"""WSGI entry point for gunicorn: `gunicorn order_engine.wsgi:app`."""

from order_engine import create_app
from order_engine.db import API_SESSION_TIMEOUTS_MS

app = create_app()
app.config["DB_SESSION_TIMEOUTS_MS"] = API_SESSION_TIMEOUTS_MS
