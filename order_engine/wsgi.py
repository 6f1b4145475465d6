"""WSGI entry point for gunicorn: `gunicorn order_engine.wsgi:app`."""

from order_engine.app import create_app
from order_engine.infra.db import API_SESSION_TIMEOUTS_MS

app = create_app()
app.config["DB_SESSION_TIMEOUTS_MS"] = API_SESSION_TIMEOUTS_MS
# A client's request must not fail on a connection PostgreSQL ended a moment ago (db.py).
app.config["DB_PRE_PING"] = True
