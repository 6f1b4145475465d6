"""Override 3, `dispatcher-drain`: Celery's green-pool loop drains the event dispatcher after
each message with a 1 ms wait instead of 0.1 s."""

from __future__ import annotations

import inspect
from functools import partial

from celery.worker import loops as celery_loops

from order_engine.tasking.overrides.shapes import expect, expect_parameters

DISPATCHER_DRAIN_S = 0.001


def check() -> None:
    drain = getattr(celery_loops, "_quick_drain", None)
    original = getattr(drain, "func", drain)
    expect_parameters(celery_loops, "_quick_drain", ["connection", "timeout"], function=original)
    expect(
        "_quick_drain" in inspect.getsource(celery_loops.synloop),
        "celery.worker.loops.synloop no longer drains through _quick_drain",
    )


def shorten() -> None:
    drain = celery_loops._quick_drain
    if getattr(drain, "keywords", {}).get("timeout") != DISPATCHER_DRAIN_S:
        celery_loops._quick_drain = partial(drain, timeout=DISPATCHER_DRAIN_S)
