"""Send tasks by name, so `order_engine` never imports `workers`.

Called only after the transaction that created or changed the order has committed: a task that
starts before the commit would not see its order (celery docs, "Database transactions").

With a Redis broker, the overrides on and no countdown, intake's sends go through
`overrides.RedisTaskSender` (one pipelined round trip for the task and its event, shared by
sends that meet in flight); any other broker, a delayed task, or the overrides off goes
through Celery's `send_task`.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from flask import current_app

from order_engine.infra.process import PROCESS
from order_engine.infra.queues import (
    EVALUATE_TRIGGERS,
    EXECUTE_ORDER,
    RECONCILE_ORDERS,
    SCHEDULE_SLICES,
)
from order_engine.tasking.overrides import RedisTaskSender

__all__ = ["EVALUATE_TRIGGERS", "EXECUTE_ORDER", "RECONCILE_ORDERS", "SCHEDULE_SLICES"]


def enqueue_execute_order(
    order_id: uuid.UUID, countdown_s: float | None = None, copy: dict[str, Any] | None = None
) -> None:
    """Queue the execution of one order, with intake's `copy` of it if given (task_copy.py).
    Duplicates are harmless: the worker claims the row."""
    celery_app: Celery = current_app.extensions["celery"]
    kwargs: dict[str, Any] = {"order_id": str(order_id)}
    if copy is not None:
        kwargs["order"] = copy
    if countdown_s is None:
        sender = task_sender(celery_app)
        if sender is not None:
            sender.send(EXECUTE_ORDER, kwargs)
            return
    celery_app.send_task(
        EXECUTE_ORDER,
        kwargs=kwargs,
        kwargsrepr=kwargs_repr(kwargs),
        countdown=countdown_s,
        # Fail fast when the broker is down: the order is already committed and the
        # reconciler will queue it, so the client should not wait on broker retries.
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
    )


def kwargs_repr(kwargs: dict[str, Any]) -> str:
    """The task's kwargs as Flower, the worker's log lines and `celery inspect` show them: the
    order's id, and intake's copy only named. Celery would otherwise `saferepr` the copy into
    every message (1 % of the API's CPU) and each "received" line would carry it."""
    return repr(
        {name: "<intake's copy>" if name == "order" else value for name, value in kwargs.items()}
    )


def enqueue_execute_orders(order_ids: list[uuid.UUID]) -> None:
    """Queue the executions of many orders (the trigger engine's batch): one pipelined round
    trip with a Redis broker, else one send each."""
    celery_app: Celery = current_app.extensions["celery"]
    sender = task_sender(celery_app)
    if sender is None:
        for order_id in order_ids:
            enqueue_execute_order(order_id)
        return
    sender.send_many(EXECUTE_ORDER, [{"order_id": str(order_id)} for order_id in order_ids])


def enqueue_schedule_slices(order_id: uuid.UUID) -> None:
    """Ask the TWAP scheduler to look at one parent now (its first slice is due at once), on the
    control queue; beat's next run does the same within TRIGGER_INTERVAL_MS if this is lost."""
    celery_app: Celery = current_app.extensions["celery"]
    celery_app.send_task(
        SCHEDULE_SLICES,
        kwargs={"order_id": str(order_id)},
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
    )


def oldest_queued_order() -> uuid.UUID | None:
    """The order of the oldest `execute_order` message still waiting in a Redis broker's queue,
    or None: an empty queue, another broker, a Redis error, another task at the head. The
    queue is FIFO (LPUSH, and BRPOP from the other end), so every order sent after that one
    is still queued behind it."""
    sender = task_sender(current_app.extensions["celery"])
    return None if sender is None else sender.oldest_queued_order()


def broker_is_app_redis() -> bool:
    """Whether the task broker is the Redis server that holds the live order state.

    If that server just failed to answer a publish, a send to it would wait out its own
    timeouts for nothing: intake then leaves the dispatch to the reconciler.
    """
    settings = current_app.config["SETTINGS"]
    broker, app_redis = urlsplit(settings.celery_broker_url), urlsplit(settings.redis_url)
    if not broker.scheme.startswith("redis") or not app_redis.scheme.startswith("redis"):
        return False
    return (broker.hostname, broker.port) == (app_redis.hostname, app_redis.port)


def task_sender(celery_app: Celery) -> RedisTaskSender | None:
    """The direct sender for this Celery app in this process, or None if it cannot be used
    (the overrides off, not a plain Redis broker, a key prefix, priorities or a route)."""
    return PROCESS.get(
        "task_sender", id(celery_app), lambda: RedisTaskSender.for_app(celery_app, kwargs_repr)
    )
