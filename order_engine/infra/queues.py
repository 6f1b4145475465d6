"""The names the API, the scheduler and the workers must agree on: tasks, queues, and which
kind of broker a URL names. One module, so a name is never a string copied into another file
(the task routes, the schedule, the annotations, the log filter, the metrics' queue depths).

Tasks are sent by name (`dispatch.py`), so `order_engine` never imports `workers`.
"""

from __future__ import annotations

EXECUTE_ORDER = "orders.execute_order"
RECONCILE_ORDERS = "orders.reconcile_orders"
EVALUATE_TRIGGERS = "orders.evaluate_triggers"
SCHEDULE_SLICES = "orders.schedule_slices"

# Orders run on TASK_QUEUE; the scheduler's own tasks on CONTROL_QUEUE, so a backlog of orders
# never delays the reconciler, the trigger engine or the TWAP scheduler.
TASK_QUEUE = "orders"
CONTROL_QUEUE = "control"
QUEUES = (TASK_QUEUE, CONTROL_QUEUE)

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
REDIS_SCHEMES = frozenset({"redis", "rediss"})


def is_amqp(broker_url: str) -> bool:
    """Whether the Celery broker is RabbitMQ (AMQP) rather than Redis."""
    return broker_url.split(":", 1)[0] in AMQP_SCHEMES


def is_redis(broker_url: str) -> bool:
    """Whether the Celery broker is a Redis server over TCP (kombu's `redis` transport)."""
    return broker_url.split(":", 1)[0] in REDIS_SCHEMES
