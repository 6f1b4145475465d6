"""The overrides of Celery's and kombu's internals: checked at start-up, named when they no
longer fit, and all off with one setting."""

import json

import pytest
from celery import Celery
from celery import _state as celery_state
from celery.worker import loops
from flask import Flask
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from order_engine.config import ConfigError, Settings
from order_engine.tasking import overrides
from order_engine.tasking.app import celery_init_app
from order_engine.tasking.dispatch import task_sender
from order_engine.tasking.overrides import sender

BASE = {
    "DATABASE_URL": "postgresql://u@localhost/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "CELERY_BROKER_URL": "redis://localhost:6379/1",
}


@pytest.fixture
def restored_drain(monkeypatch):
    monkeypatch.setattr(loops, "_quick_drain", loops._quick_drain)


def celery_for(environ: dict[str, str]) -> Celery:
    flask_app = Flask("overrides")
    flask_app.config["SETTINGS"] = Settings.from_env({**BASE, **environ})
    default = celery_state.default_app
    try:
        return celery_init_app(flask_app)
    finally:
        celery_state.set_default_app(default)


def test_the_installed_versions_fit_every_override(restored_drain):
    assert overrides.install(True) == overrides.TRANSPORT


def test_on_by_default_the_engine_uses_its_transport_and_direct_sender(restored_drain):
    celery_app = celery_for({})
    assert celery_app.conf.broker_transport == overrides.TRANSPORT
    assert isinstance(task_sender(celery_app), overrides.RedisTaskSender)


def test_off_the_engine_runs_on_celery_and_kombu_as_they_come(monkeypatch):
    pristine = getattr(loops._quick_drain, "func", loops._quick_drain)
    monkeypatch.setattr(loops, "_quick_drain", pristine)
    celery_app = celery_for({"CELERY_OVERRIDES": "false"})
    assert celery_app.conf.broker_transport is None
    assert task_sender(celery_app) is None
    assert loops._quick_drain is pristine


def test_a_mismatch_is_a_configuration_error_that_says_how_to_start_anyway(monkeypatch):
    monkeypatch.setattr(kombu_redis.QoS, "pipe_or_acquire", lambda self, client=None: None)
    with pytest.raises(ConfigError, match="CELERY_OVERRIDES=false"):
        celery_for({})


def test_a_qos_whose_pipeline_builder_changed_is_refused_naming_the_transport(monkeypatch):
    monkeypatch.setattr(kombu_redis.QoS, "pipe_or_acquire", lambda self, client=None: None)
    with pytest.raises(overrides.OverrideMismatch, match="redis-transport") as refused:
        overrides.install(True)
    assert refused.value.override == "redis-transport"
    assert "pipe_or_acquire" in str(refused.value)


def test_a_channel_without_its_client_builder_is_refused_naming_the_transport(monkeypatch):
    monkeypatch.delattr(kombu_redis.Channel, "_create_client")
    with pytest.raises(overrides.OverrideMismatch, match="redis-transport"):
        overrides.install(True)


def test_a_consumer_read_that_no_longer_rotates_its_queues_is_refused_naming_the_transport(
    monkeypatch,
):
    def brpop_read(self, **options):
        return self.connection._deliver(options, "orders")

    monkeypatch.setattr(kombu_redis.Channel, "_brpop_read", brpop_read)
    with pytest.raises(overrides.OverrideMismatch, match="redis-transport") as refused:
        overrides.install(True)
    assert "_brpop_read" in str(refused.value)


def test_a_changed_message_envelope_is_refused_naming_the_direct_sender(monkeypatch):
    augment = virtual.Channel._inplace_augment_message

    def with_a_new_property(self, message, exchange, routing_key):
        augment(self, message, exchange, routing_key)
        message["properties"]["routing_hint"] = routing_key

    monkeypatch.setattr(virtual.Channel, "_inplace_augment_message", with_a_new_property)
    with pytest.raises(overrides.OverrideMismatch, match="direct-task-sender"):
        overrides.install(True)


def test_a_drain_without_a_timeout_is_refused_naming_the_drain(monkeypatch):
    monkeypatch.setattr(loops, "_quick_drain", lambda connection: None)
    with pytest.raises(overrides.OverrideMismatch, match="dispatcher-drain"):
        overrides.install(True)


def test_the_senders_envelope_is_kombus_own_but_for_its_delivery_tag():
    body, headers = {"order_id": "x"}, {"task": "orders.execute_order"}
    ours = json.loads(sender._envelope(body, headers, {"delivery_mode": 2}, routing_key="q"))
    theirs = sender._kombu_envelope(body, headers, "q")
    for message in (ours, theirs):
        assert message["properties"].pop("delivery_tag")
    assert ours == theirs


def test_nothing_else_in_the_engine_imports_celery_or_kombu_internals():
    """Public APIs (Celery, Task, shared_task, signals, kombu's errors) may be used anywhere;
    modules of celery/kombu that are not their public surface only in tasking/overrides/."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    public = {
        "celery",
        "celery.signals",
        "celery.schedules",
        "celery.exceptions",
        "kombu",
        "kombu.exceptions",
    }
    found = []
    for path in [*root.glob("order_engine/**/*.py"), *root.glob("workers/*.py")]:
        if "overrides" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found += [
                f"{path.relative_to(root)}: {name}"
                for name in names
                if name.split(".")[0] in {"celery", "kombu"} and name not in public
            ]
    assert found == []
