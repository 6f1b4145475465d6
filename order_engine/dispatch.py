"""Send tasks by name, so `order_engine` never imports `workers`.

Called only after the transaction that created or changed the order has committed: a task that
starts before the commit would not see its order (celery docs, "Database transactions").
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from flask import current_app

EXECUTE_ORDER = "orders.execute_order"
RECONCILE_ORDERS = "orders.reconcile_orders"
EVALUATE_TRIGGERS = "orders.evaluate_triggers"


def enqueue_execute_order(order_id: uuid.UUID, countdown_s: float | None = None) -> None:
    """Queue the execution of one order. Duplicates are harmless: the worker claims the row."""
    current_app.extensions["celery"].send_task(
        EXECUTE_ORDER,
        kwargs={"order_id": str(order_id)},
        countdown=countdown_s,
        # Fail fast when the broker is down: the order is already committed and the
        # reconciler will queue it, so the client should not wait on broker retries.
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
    )


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
