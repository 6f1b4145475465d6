"""Making a group commit's batch form deterministically in a test."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from order_engine.infra.batching import GroupCommit
from tests.support.watchers import wait_until


class HoldFirst:
    """Stands in for a batch's Redis round trip (`run`, a script or a command taking keys):
    records each call's keys, and holds the first call until `release()`, so that the calls
    made meanwhile queue and go together as the next batch."""

    def __init__(self, run: Callable[..., Any]) -> None:
        self.run = run
        self.calls: list[list[Any]] = []
        self.held = threading.Event()
        self._go = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(list(kwargs["keys"] if "keys" in kwargs else args[0]))
        if len(self.calls) == 1:
            self.held.set()
            self._go.wait(5)
        return self.run(*args, **kwargs)

    def release(self) -> None:
        self._go.set()

    def run_together(self, batcher: GroupCommit[Any, Any], calls: list[Callable[[], Any]]) -> None:
        """Run `calls` on threads: the first alone, held in its round trip until the others
        have queued behind it in `batcher`; then release it and wait for them all."""
        threads = [threading.Thread(target=call) for call in calls]
        threads[0].start()
        assert self.held.wait(5), "the first call never reached its round trip"
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: batcher.queued() == len(calls) - 1, 5, "the other calls to queue")
        self.release()
        for thread in threads:
            thread.join(5)
