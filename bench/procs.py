"""Run load generators in their own processes, bounded in time, results through JSON files.

Spawned (not forked) children: the parent runs a sampling thread, and a fork would copy it
half-way through. Each child writes its result to a file; a child still running at its
deadline is terminated, then killed, so a run can never hang on its load generator.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import signal
import time
import traceback
from pathlib import Path
from typing import Any

_context = multiprocessing.get_context("spawn")
_running: set[Child] = set()


def _entry(target: str, args: tuple[Any, ...], out_path: str) -> None:
    # Ctrl-C reaches the whole foreground group; the parent stops its children itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    module_name, _, function_name = target.rpartition(".")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        result = function(*args)
    except Exception:  # noqa: BLE001 - reported to the parent, which decides
        result = {"error": traceback.format_exc()}
    Path(out_path).write_text(json.dumps(result))


class Child:
    """One load-generator process; `target` is "module.function", called with `args`."""

    def __init__(self, target: str, args: tuple[Any, ...], out_path: Path) -> None:
        self.out_path = out_path
        self.process = _context.Process(
            target=_entry, args=(target, args, str(out_path)), daemon=True
        )

    def start(self) -> Child:
        self.process.start()
        _running.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait (bounded) for the child; its result, or {"error": ...}."""
        self.process.join(timeout_s)
        _running.discard(self)
        if self.process.is_alive():
            self.stop()
            return {"error": f"load generator still running after {timeout_s:.0f}s; stopped"}
        if not self.out_path.exists():
            return {"error": f"load generator exited with {self.process.exitcode}, no result"}
        return json.loads(self.out_path.read_text())

    def stop(self) -> None:
        _running.discard(self)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def new_event() -> Any:
    return _context.Event()


def wait_all(children: list[Child], timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    return [child.result(max(1.0, deadline - time.monotonic())) for child in children]


def stop_all() -> None:
    """Stop every load generator still running (Ctrl-C, or an error in the parent)."""
    for child in list(_running):
        child.stop()


def running_pids() -> list[int]:
    return [child.pid for child in _running if child.pid is not None]
