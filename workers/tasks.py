"""Celery tasks: thin wrappers that unpack ids, call one service, declare their reliability.

Operators find every attempt of an order in Flower by the task name `orders.execute_order` and
the keyword argument `order_id`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from celery import Task, shared_task
from flask import current_app
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import InterfaceError, OperationalError

from order_engine.infra import queues
from order_engine.infra.db import get_session
from order_engine.infra.redis_client import get_redis
from order_engine.services.execution import RetryLater, execution_service, new_executor_id
from order_engine.services.reconciler import ReconcilerService
from order_engine.services.triggers import trigger_service
from order_engine.services.twap import twap_service

log = logging.getLogger(__name__)

# Infrastructure hiccups (PostgreSQL or Redis briefly unreachable) retry with Celery's own
# exponential backoff and jitter; the order's state in PostgreSQL tells the next run where it is.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, RedisConnectionError)


# The delivery options of `execute_order` (the benchmark's floor task declares the same).
EXECUTE_ORDER_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": INFRASTRUCTURE_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 8,
    "retry_jitter": True,
    "ignore_result": True,
}


@shared_task(bind=True, name=queues.EXECUTE_ORDER, **EXECUTE_ORDER_OPTIONS)
def execute_order(self: Task, order_id: str, order: dict[str, Any] | None = None) -> str:
    """Run the next attempt of one order (routing → building → submitted → confirmed).

    `order`: intake's copy of a new market order (services/task_copy.py), used by the first
    run only; a retry reads the row, which its earlier attempt changed."""
    copy = order if self.request.retries == 0 else None
    try:
        return execution_service().execute(uuid.UUID(order_id), new_executor_id(), copy)
    except RetryLater as later:
        # Venue-level transient failure: the service already recorded `pending` with the
        # next attempt's time, so retry with exactly that countdown. The retry reads the row,
        # so its message carries the id alone, not intake's copy.
        raise self.retry(
            exc=later.error, countdown=later.countdown_s, kwargs={"order_id": order_id}
        ) from later


@shared_task(name=queues.RECONCILE_ORDERS, ignore_result=True, acks_late=False)
def reconcile_orders() -> int:
    """Re-queue orders nobody is working on (lost messages, dead workers); run by beat."""
    settings = current_app.config["SETTINGS"]
    return len(ReconcilerService(get_session(), settings, get_redis()).run())


# One evaluation at a time per worker process: beat sends one every TRIGGER_INTERVAL_MS, and
# one that outlasts the interval (a thousand orders crossing at once) would otherwise share
# the event loop with the next, both quoting the same candidates. The one skipped loses
# nothing: the running one sees the same market, and another comes within the interval.
_evaluating = threading.Lock()


@shared_task(name=queues.EVALUATE_TRIGGERS, ignore_result=True, acks_late=False)
def evaluate_triggers() -> int:
    """Trigger the limit and sniper orders the market now meets, expire the overdue ones, then
    take the TWAP parents' steps; run by beat about once per slot. The TWAP steps ride this
    message rather than one of their own: beat spends about 10 ms of CPU on each message it
    sends (docs/performance.md, the trigger engine), 2 % of a core at two a second whether a
    TWAP runs or not. Safe to run twice at once: triggering, and each TWAP step, is
    compare-and-set."""
    if not _evaluating.acquire(blocking=False):
        return 0
    try:
        triggered = len(trigger_service().evaluate().triggered)
        return triggered + len(twap_service().evaluate().started)
    finally:
        _evaluating.release()


@shared_task(name=queues.SCHEDULE_SLICES, ignore_result=True, acks_late=False)
def schedule_slices(order_id: str) -> int:
    """Take one TWAP parent's step now: intake sends it for a new parent, whose first slice is
    due at once (beat's next evaluation would take it up to TRIGGER_INTERVAL_MS later). Safe
    beside an evaluation: each parent moves by compare-and-set, and a slice is one row."""
    return len(twap_service().evaluate(uuid.UUID(order_id)).started)
