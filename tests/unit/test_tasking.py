"""The Celery configuration for each broker: Redis's visibility timeout, RabbitMQ's confirms."""

import threading

import pytest
from celery import Celery
from celery import _state as celery_state
from celery.worker import loops
from flask import Flask

from order_engine.config import Settings
from order_engine.tasking.app import celery_config, celery_init_app, is_amqp

BASE = {"DATABASE_URL": "postgresql://u@localhost/db", "REDIS_URL": "redis://localhost:6379/0"}


def config(broker_url: str) -> dict:
    return celery_config(Settings.from_env({**BASE, "CELERY_BROKER_URL": broker_url}))


@pytest.mark.parametrize(
    ("url", "amqp"),
    [
        ("amqp://guest:guest@rabbit:5672//", True),
        ("amqps://u:p@rabbit:5671/vhost", True),
        ("pyamqp://rabbit//", True),
        ("redis://localhost:6379/1", False),
        ("rediss://localhost:6380/1", False),
    ],
)
def test_the_broker_kind_is_read_from_the_url_scheme(url, amqp):
    assert is_amqp(url) is amqp


def test_rabbitmq_publishes_with_confirms_and_no_redis_transport_options():
    options = config("amqp://guest:guest@rabbit:5672//")["broker_transport_options"]
    assert options["confirm_publish"] is True
    assert "visibility_timeout" not in options
    assert "max_connections" not in options


def test_redis_keeps_its_visibility_timeout_and_bounded_calls():
    settings = Settings.from_env({**BASE, "CELERY_BROKER_URL": "redis://localhost:6379/1"})
    options = celery_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] == settings.visibility_timeout_s
    assert options["socket_timeout"] <= 2
    assert "confirm_publish" not in options


@pytest.mark.parametrize("url", ["amqp://rabbit//", "redis://localhost:6379/1"])
def test_reliability_settings_hold_on_either_broker(url):
    conf = config(url)
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_routes"]["orders.reconcile_orders"]["queue"] == "control"


def test_every_task_thread_shares_one_result_backend():
    # Under gevent a thread-local is per greenlet, and each task runs in a greenlet of its own.
    app = Celery("shared-backend", set_as_current=False)
    app.conf.update(config("redis://localhost:6379/1"))
    first, seen = app.backend, []
    threads = [threading.Thread(target=lambda: seen.append(app.backend)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(seen) == 3
    assert all(backend is first for backend in seen)


def test_a_green_workers_loop_waits_on_the_event_connection_one_millisecond_not_a_tenth():
    # With RabbitMQ, Celery's loop for green pools drains the event dispatcher's connection
    # after every message: 0.1 s there capped a worker at ten tasks a second.
    flask_app = Flask("drain")
    flask_app.config["SETTINGS"] = Settings.from_env({**BASE, "CELERY_BROKER_URL": "amqp://r//"})
    default = celery_state.default_app
    try:
        celery_init_app(flask_app)
    finally:
        celery_state.set_default_app(default)

    class Connection:
        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def drain_events(self, timeout: float) -> None:
            self.timeouts.append(timeout)

    connection = Connection()
    loops._quick_drain(connection)
    loops._quick_drain(connection)
    assert connection.timeouts == [0.001, 0.001]
