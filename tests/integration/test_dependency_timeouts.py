"""Every wait on a dependency is bounded by configuration (the behaviour under a frozen Redis
is in faults/test_frozen_redis.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from order_engine.app import create_app
from order_engine.infra.db import API_SESSION_TIMEOUTS_MS, make_engine
from order_engine.infra.redis_client import make_redis
from order_engine.tasking.app import celery_config

pytestmark = pytest.mark.integration


def test_api_sessions_bound_statements_and_lock_waits(database_url):
    engine = make_engine(database_url, session_timeouts_ms=API_SESSION_TIMEOUTS_MS)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "5s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "2s"
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "10s"
    finally:
        engine.dispose()
    assert engine.pool.timeout() == 10


def test_the_wsgi_app_uses_the_api_session_timeouts(test_settings, monkeypatch):
    # The WSGI module builds its app from the environment, as gunicorn's workers do.
    for name, value in test_settings.items():
        monkeypatch.setenv(name, value)
    import order_engine.wsgi

    assert order_engine.wsgi.app.config["DB_SESSION_TIMEOUTS_MS"] == API_SESSION_TIMEOUTS_MS


def test_redis_clients_and_the_broker_have_timeouts(test_settings):
    settings = create_app(test_settings).config["SETTINGS"]
    client = make_redis(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"]
    assert kwargs["socket_connect_timeout"]
    assert client.get_retry()._retries <= 1
    options = celery_config(settings)["broker_transport_options"]
    assert options["socket_timeout"]
    assert options["socket_connect_timeout"]
    assert options["retry_on_timeout"] is False
