"""WSGI entry point for gunicorn: `gunicorn order_engine.wsgi:app`."""

from order_engine import create_app

app = create_app()
