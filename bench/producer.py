"""The framework ceiling: a bare Celery round trip through the product's own worker.

A separate process sends `count` `bench.noop` tasks as fast as it can through the product's
Celery app (same broker, same settings), each INCRementing one Redis counter, and times the
first send to the last completion. Whatever the engine achieves end to end cannot beat this.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import redis

from bench import NOOP_TASK

POLL_S = 0.005
WARMUP_TASKS = 20


def noop_roundtrip(spec: dict[str, Any]) -> dict[str, Any]:
    """Send `count` no-op tasks; return tasks/s from first send to last completion."""
    os.environ.update(spec["env"])
    from order_engine.app import create_app

    app = create_app()
    celery_app = app.extensions["celery"]
    counter = redis.Redis.from_url(app.config["SETTINGS"].redis_url)
    key = f"bench:noop:{uuid.uuid4().hex}"
    try:
        _send_and_wait(celery_app, counter, key + ":warmup", WARMUP_TASKS, spec["timeout_s"])
        return _send_and_wait(celery_app, counter, key, spec["count"], spec["timeout_s"])
    finally:
        counter.delete(key, key + ":warmup")


def _send_and_wait(celery_app, counter: redis.Redis, key: str, count: int, timeout_s: float):
    started = time.monotonic()
    for _ in range(count):
        celery_app.send_task(NOOP_TASK, kwargs={"counter": key})
    sent_s = time.monotonic() - started
    deadline = started + timeout_s
    done = 0
    while time.monotonic() < deadline:
        done = int(counter.get(key) or 0)
        if done >= count:
            break
        time.sleep(POLL_S)
    elapsed_s = time.monotonic() - started
    return {
        "count": count,
        "completed": done,
        "elapsed_s": round(elapsed_s, 3),
        "send_s": round(sent_s, 3),
        "send_rate": round(count / sent_s, 1) if sent_s else None,
        "tasks_per_s": round(done / elapsed_s, 1) if elapsed_s else None,
    }
