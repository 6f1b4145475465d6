"""This process's shared resources: every object built once per process and shared by all its
requests and tasks, held in one object and dropped in one place after fork.

What it holds, by kind (and who builds it):

- `engine`, `session_factory`: the SQLAlchemy engine per database URL and its session
  factory (`db.get_engine`, `db.get_session`);
- `redis`: the application's Redis client per URL (`redis_client.get_redis`);
- `publisher`: the event publisher per Redis URL, its script registered once
  (`events.app_publisher`);
- `hub`: the pub/sub hub of the API's streams, with its reader thread (`streaming.get_hub`);
- `chain`: the JSON-RPC client, pool index, router and wallet (`resources.chain_resources`),
  and `fillable`, the pairs' fill bounds read from the chain (`resources.max_fillable_atoms`);
- `task_sender`: the direct Redis task sender per Celery app (`dispatch.task_sender`).
- `transition_batches`, `intake_batches`: the group-commit batchers of standalone transitions
  and of intake's inserts per engine, with their flusher threads (`repositories/order.py`,
  `repositories/intake.py`; `batching.GroupCommit`).

Why one object: a forked child must not use what its parent built. Pooled connections would be
shared by two processes (their replies interleave), and threads (the hub's reader) do not
survive fork. `reset_after_fork()` drops everything at once; the fork hooks call it (gunicorn's
`post_fork`, Celery's `worker_process_init`), and `get` notices a new pid by itself, so a fork
that runs no hook cannot hand a child its parent's connections either.

Pure memos of immutable facts (a mint's decimals, program addresses, pool math) are not
resources: they hold no connection and stay valid across fork, so they keep their own caches.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class ProcessResources:
    def __init__(self) -> None:
        self._pid = os.getpid()
        # Re-entrant: building one resource may get another (the publisher its Redis client).
        self._lock = threading.RLock()
        self._held: dict[str, dict[Hashable, Any]] = {}
        self._release: dict[str, Callable[[Any], None]] = {}

    def get(self, kind: str, key: Hashable, build: Callable[[], T]) -> T:
        """The `kind` resource for `key`, built by `build` on first use in this process."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        held = self._held.get(kind)
        found = _MISSING if held is None else held.get(key, _MISSING)
        if found is _MISSING:
            with self._lock:
                held = self._held.setdefault(kind, {})
                found = held.get(key, _MISSING)
                if found is _MISSING:
                    found = held[key] = build()
        return found

    def held(self, kind: str) -> list[Any]:
        """Every `kind` resource this process has built (none yet, or since its fork: []).
        Takes no lock: it is called from signal handlers (`streaming.stop_streams`), and
        copying a dict's values is atomic under the GIL."""
        if self._pid != os.getpid():
            return []
        return list(self._held.get(kind, {}).values())

    def on_fork(self, kind: str, release: Callable[[Any], None]) -> None:
        """How to let go of an inherited `kind` resource in a child (default: forget it)."""
        self._release[kind] = release

    def reset_after_fork(self) -> None:
        """Drop every resource built before fork; call in the child, before any request."""
        held, self._held = self._held, {}
        for kind, resources in held.items():
            release = self._release.get(kind)
            if release is not None:
                for resource in resources.values():
                    release(resource)
        # A lock held by another thread of the parent at fork would stay held in the child.
        self._lock = threading.RLock()
        self._pid = os.getpid()


PROCESS = ProcessResources()
