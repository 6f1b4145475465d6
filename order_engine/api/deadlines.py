"""Deadlines on reads from a client's socket, whatever gunicorn's worker class.

At its deadline a read still waiting has the reading side of its socket shut: the server's read
returns at once (end of stream under gthread, an error under gevent), and what the client sends
after that is never read. A socket timeout would bound each wait only, which a client sending a
byte now and then renews forever; a `gevent.Timeout` would cover gevent workers only.

One thread (a greenlet under gevent) per process ends the reads that are due. All deadlines are
the same time after their start, so they fall due in the order they were set: a queue, not a
heap. Watching a read costs about 2.5 µs (threads or gevent, on the reference machine), the
thread being woken only when the queue was empty.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any


class Watch:
    """One read's deadline; `expired` once its socket was shut for being late."""

    __slots__ = ("done", "due", "expired", "sock")

    def __init__(self, sock: Any, due: float) -> None:
        self.sock, self.due = sock, due
        self.done = self.expired = False

    def expire(self) -> None:
        self.expired = True
        # The socket may have been closed meanwhile; its object then refuses (it has no fd).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)


class Deadlines:
    """Reads that must be over `timeout_s` after they start."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._due: deque[Watch] = deque()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, sock: Any) -> Iterator[Watch]:
        """Watch the reads from `sock` inside the block (no socket: nothing to watch)."""
        watch = Watch(sock, time.monotonic() + self.timeout_s)
        if sock is not None:
            self._add(watch)
        try:
            yield watch
        finally:
            watch.done = True

    def _add(self, watch: Watch) -> None:
        with self._changed:
            self._due.append(watch)
            if self._thread is None:  # started in the process that serves (after fork)
                self._thread = threading.Thread(
                    target=self._run, name="read-deadlines", daemon=True
                )
                self._thread.start()
            if len(self._due) == 1:  # otherwise the thread waits for an earlier deadline
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due:
                    self._changed.wait()
                first = self._due[0]
                left = first.due - time.monotonic()
                if left > 0 and not first.done:
                    self._changed.wait(left)
                    continue
                self._due.popleft()
            if not first.done:
                first.expire()
