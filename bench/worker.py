"""The benchmark's Celery app: `celery -A bench.worker worker`, the product's app
(`workers.celery_app`: every task, signal handler and setting) with one no-op task added,
`bench.noop`: sent by `POST /bench/baseline` for every row it inserts (the baseline pays for one
send, not for an execution), and by the stack's readiness probe with a `counter` to INCR.
"""

from __future__ import annotations

from bench import NOOP_TASK
from order_engine.infra.redis_client import get_redis
from workers.celery_app import celery_app

__all__ = ["celery_app"]


@celery_app.task(name=NOOP_TASK, ignore_result=True)
def noop(order_id: str | None = None, counter: str | None = None) -> None:
    """Do nothing, or count one completion under `counter` (a Redis key) when given."""
    if counter:
        get_redis().incr(counter)
