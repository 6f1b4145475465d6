"""Send tasks by name, so `order_engine` never imports `workers`.

Called only after the transaction that created or changed the order has committed: a task that
starts before the commit would not see its order (celery docs, "Database transactions").
"""

from __future__ import annotations

import uuid

from flask import current_app

EXECUTE_ORDER = "orders.execute_order"
RECONCILE_ORDERS = "orders.reconcile_orders"


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
