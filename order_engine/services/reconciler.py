"""The reconciler: the backstop for every way the queue can lose an order.

A Redis broker can drop a task (a send that failed, Redis restarted empty, a worker killed
between popping and recording a message; docs/reliability.md). PostgreSQL knows every
order, so on a schedule the reconciler finds the orders nobody is working on — waiting with no
recent dispatch, or mid-flight with an expired lease — and queues them again. Duplicates are
harmless: the worker's claim decides who runs an order, and a take-over asks the chain about
the earlier signature before doing anything.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis
from sqlalchemy.orm import Session

from order_engine.config import Settings
from order_engine.repositories.order import OrderRepository
from order_engine.tasking import dispatch

log = logging.getLogger(__name__)

BATCH = 200


HEARTBEAT_KEY = "reconciler:heartbeat"


class ReconcilerService:
    def __init__(self, session: Session, settings: Settings, redis_client: redis.Redis) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.settings = settings
        self.redis = redis_client

    def run(self) -> list[uuid.UUID]:
        """Re-dispatch one batch of stale orders; return their ids."""
        started = time.monotonic()
        # Read before the sweep: if the queue's head moves on meanwhile, the orders between
        # are only left for the next sweep.
        queued_behind = dispatch.oldest_queued_order()
        with self.session.begin():
            stale = self.orders.claim_stale(
                self.settings.stale_pending_after_s, BATCH, queued_behind
            )
        for order_id in stale:
            try:
                dispatch.enqueue_execute_order(order_id)
            except Exception as exc:  # noqa: BLE001 - broker down: the next sweep retries
                log.warning("reconciler could not queue %s: %s", order_id, exc)
        self._beat()
        if stale:
            log.warning(
                "reconciler re-dispatched %d stale order(s) in %.0f ms: %s",
                len(stale),
                (time.monotonic() - started) * 1000,
                ", ".join(map(str, stale[:10])),
            )
        return stale

    def _beat(self) -> None:
        """Record that a worker consumed the control queue just now (see `check-worker`)."""
        try:
            self.redis.set(
                HEARTBEAT_KEY, f"{time.time():.3f}", ex=self.settings.reconcile_interval_s * 20
            )
        except redis.RedisError as exc:
            log.warning("could not record the reconciler heartbeat: %s", exc)


def heartbeat_age_s(redis_client: redis.Redis) -> float | None:
    raw = redis_client.get(HEARTBEAT_KEY)
    return None if raw is None else time.time() - float(raw)
