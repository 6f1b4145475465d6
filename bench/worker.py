"""Benchmark-only tasks: no-ops, so the benchmark can measure the bare Celery round trip.

`POST /bench/baseline` sends `bench.noop` for every order row it inserts (the baseline must pay
for one send, not for any execution). The benchmark's framework-ceiling measurement sends it
with a `counter` key: the task INCRs that Redis key, so the producer can tell when every task ran.

`bench.floor` is the Celery floor of `python -m bench.floors`: declared with the delivery
options of `orders.execute_order`, it does nothing, or retries itself once after
`retry_countdown_s` (the cost of one Celery retry with a countdown).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from order_engine.infra.queues import NOOP_TASK
from order_engine.infra.redis_client import get_redis
from workers.tasks import EXECUTE_ORDER_OPTIONS


@shared_task(name=NOOP_TASK, ignore_result=True)
def noop(order_id: str | None = None, counter: str | None = None) -> None:
    """Do nothing, or count one completion under `counter` (a Redis key) when given."""
    if counter:
        get_redis().incr(counter)


@shared_task(bind=True, name="bench.floor", **EXECUTE_ORDER_OPTIONS)
def floor(self: Any, order_id: str, retry_countdown_s: float | None = None) -> None:
    """Nothing; with `retry_countdown_s`, one retry after that long first."""
    if retry_countdown_s is not None and not self.request.retries:
        raise self.retry(countdown=retry_countdown_s)
