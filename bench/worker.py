"""The benchmark's Celery app: `celery -A bench.worker worker`, the product's app
(`workers.celery_app`: every task, signal handler and setting) with two no-op tasks added.

- `bench.noop`: sent by `POST /bench/baseline` for every row it inserts (the baseline pays for
  one send, not for an execution), and by the stack's readiness probe with a `counter` to INCR.
- `bench.floor`: the Celery floor (`python -m bench.floors`), declared with `execute_order`'s
  delivery options; a no-op, or one retry after `retry_countdown_s` first.
"""

from __future__ import annotations

from typing import Any

from bench import FLOOR_TASK, NOOP_TASK
from order_engine.infra.redis_client import get_redis
from workers.celery_app import celery_app
from workers.tasks import EXECUTE_ORDER_OPTIONS

__all__ = ["celery_app"]


@celery_app.task(name=NOOP_TASK, ignore_result=True)
def noop(order_id: str | None = None, counter: str | None = None) -> None:
    """Do nothing, or count one completion under `counter` (a Redis key) when given."""
    if counter:
        get_redis().incr(counter)


@celery_app.task(bind=True, name=FLOOR_TASK, **EXECUTE_ORDER_OPTIONS)
def floor(self: Any, order_id: str, retry_countdown_s: float | None = None) -> None:
    """Nothing; with `retry_countdown_s`, one retry after that long first."""
    if retry_countdown_s is not None and not self.request.retries:
        raise self.retry(countdown=retry_countdown_s)
