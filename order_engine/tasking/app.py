"""The Celery app, bound to the Flask app so every task runs inside an app context.

The reliability settings (docs/reliability.md): late acks, requeue when a worker dies, one
message reserved per process, and a visibility timeout longer than any task can hold its message
(checked in `Settings.checked`). Where the engine replaces Celery's or kombu's internals, it does
so in `overrides` alone, checked at start-up and switched off with CELERY_OVERRIDES=false.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask, has_app_context

from order_engine.config import Settings
from order_engine.infra.queues import (
    CONTROL_QUEUE,
    EVALUATE_TRIGGERS,
    RECONCILE_ORDERS,
    SCHEDULE_SLICES,
    TASK_QUEUE,
    is_amqp,
    is_redis,
)
from order_engine.tasking import overrides

__all__ = ["CONTROL_QUEUE", "TASK_QUEUE", "celery_config", "celery_init_app", "is_amqp"]

# How often the broker and a worker check each other over an idle AMQP connection. A worker
# host that vanishes (crash, cut link) is noticed after about two missed beats, and RabbitMQ
# then hands its unacknowledged messages to another worker: the AMQP counterpart of Redis's
# visibility timeout, and much shorter (README, "RabbitMQ as the broker").
AMQP_HEARTBEAT_S = 10


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if is_amqp(settings.celery_broker_url):
        # Publisher confirms: a publish returns once RabbitMQ has taken the message (written
        # to disk for a persistent message on a durable queue), and raises if it refused it.
        # Without them `basic.publish` is fire-and-forget: a connection that drops right after
        # the call, or a channel the broker closes, loses the task while the API answers 202
        # and the worker believes its retry is queued.
        return {"confirm_publish": True, "write_timeout": 2}
    # Every broker call is bounded (docs/reliability.md, "Bounded calls"): a frozen Redis makes a
    # publish fail after a few seconds instead of holding an API request for ever.
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_timeout": 2,
        "socket_connect_timeout": 1,
        "socket_keepalive": True,
        "health_check_interval": 25,
        # No retry inside redis-py on a timeout: a broker that did not answer in time is not
        # about to; kombu's own retry (dispatch.py's retry_policy) decides what happens next.
        "retry_on_timeout": False,
        # kombu's Redis pool refuses a connection beyond this (MaxConnectionsError, default 10)
        # instead of waiting; with a gevent pool every task acks on its own greenlet, so acks
        # failed under load and the tasks were redelivered (celery/celery#1350). One per task
        # slot, plus the consumer's own.
        "max_connections": settings.worker_concurrency + 16,
    }


def celery_config(settings: Settings, transport: str | None = None) -> dict[str, Any]:
    """Celery's settings; `transport` is the broker transport `overrides.install` returned
    (None: kombu's own for the broker URL's scheme)."""
    transport_options = broker_transport_options(settings)
    return {
        "broker_url": settings.celery_broker_url,
        "broker_transport": transport if is_redis(settings.celery_broker_url) else None,
        "broker_transport_options": transport_options,
        "broker_connection_timeout": 2,
        "broker_heartbeat": AMQP_HEARTBEAT_S,  # AMQP only; Redis ignores it
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "visibility_timeout": settings.visibility_timeout_s,
        "task_ignore_result": True,
        # No result is stored, so the (disabled) result backend holds no state: one instance
        # for the process. Celery keeps a backend that is not marked thread-safe per thread,
        # and under gevent a thread-local is per greenlet: each task built its own backend,
        # 7 % of a no-op task's CPU.
        "result_backend_thread_safe": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, settings.task_time_limit_s - 5),
        "task_default_queue": TASK_QUEUE,
        # The reconciler has its own queue, so a backlog of orders cannot starve it; a worker
        # consumes both (`--queues orders,control`).
        "task_routes": {
            RECONCILE_ORDERS: {"queue": CONTROL_QUEUE},
            EVALUATE_TRIGGERS: {"queue": CONTROL_QUEUE},
            SCHEDULE_SLICES: {"queue": CONTROL_QUEUE},
        },
        "task_create_missing_queues": True,
        # Flower sees tasks only when workers send events. They cost the worker a tenth of its
        # CPU per order (three fanout publishes per task), so by default they are off until
        # Flower runs: it turns them on in every worker it sees (its `enable_events`, every few
        # seconds). TASK_EVENTS=true sends them always, and `task-sent` from the API too.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "worker_hijack_root_logger": False,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_soft_shutdown_timeout": 10,
        "beat_schedule": beat_schedule(settings),
    }


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """What the scheduler (Celery beat) sends, and how often."""
    return {
        "reconcile-orders": {
            "task": RECONCILE_ORDERS,
            "schedule": float(settings.reconcile_interval_s),
            "options": {"expires": float(settings.reconcile_interval_s * 3)},
        },
        # Limit and sniper orders (docs/design.md, the trigger engine), and the TWAP orders'
        # steps with them (one message for both: workers/tasks.py): about once per slot. A
        # message not run within two intervals is dropped; the next one does the same work.
        "evaluate-triggers": {
            "task": EVALUATE_TRIGGERS,
            "schedule": settings.trigger_interval_ms / 1000,
            "options": {"expires": settings.trigger_interval_ms * 2 / 1000},
        },
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            # A task called inside an existing context (tests) reuses it; otherwise each task
            # gets its own context, hence its own DB session closed at teardown.
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    settings = app.config["SETTINGS"]
    transport = overrides.install(settings.celery_overrides)
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(settings, transport))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
