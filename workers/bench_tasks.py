"""Benchmark-only task: a no-op, so the benchmark can measure the bare Celery round trip.

`POST /bench/baseline` sends it for every order row it inserts (the baseline must pay for one
send, not for any execution). The benchmark's framework-ceiling measurement sends it with a
`counter` key: the task INCRs that Redis key, so the producer can tell when every task ran.
"""

from __future__ import annotations

from celery import shared_task

from order_engine.queues import NOOP_TASK
from order_engine.redis_client import get_redis


@shared_task(name=NOOP_TASK, ignore_result=True)
def noop(order_id: str | None = None, counter: str | None = None) -> None:
    """Do nothing, or count one completion under `counter` (a Redis key) when given."""
    if counter:
        get_redis().incr(counter)
