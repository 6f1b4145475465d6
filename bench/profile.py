"""Optional sampling profiles (`--profile`) of a server process while it is under load.

py-spy (the `bench` extra) attaches to a running process without stopping it (--nonblocking)
and samples the threads on a CPU (idle ones are left out: py-spy's default). Not `--gil`
(the thread holding the GIL): under gevent the thread that holds the GIL is often one waiting
in the hub at a switch point, and such profiles counted about twice the process's measured
CPU. The summary groups the samples by library, which answers "what does a request spend its
CPU on" in one table; the raw stacks stay in the run folder as `profile-<label>.txt`, one
collapsed stack per line with its count (flamegraph.pl, inferno and speedscope open it).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 100
# Frames on nearly every stack (thread pools, server loops, framework dispatch) say nothing.
PLUMBING = ("threading.py", "concurrent/futures/", "gunicorn/workers/", "flask/app.py")
PLUMBING += ("contextlib.py", "celery/app/trace.py", "celery/concurrency/", "flask_sock/")
PLUMBING += ("order_engine/tasking/app.py", "celery/app/autoretry.py")
TOP = 15
# A frame's file -> the library its own CPU counts in (the first that matches).
LIBRARIES = [
    (needle, needle.rstrip("/").removesuffix(".py"))
    for needle in (
        *("order_engine/", "workers/", "sqlalchemy/", "psycopg", "celery/", "kombu/", "flask/"),
        *("werkzeug/", "gunicorn/", "marshmallow/", "wsproto/", "json/", "logging/"),
        *("threading.py", "queue.py", "socket.py", "selectors.py", "ssl.py", "uuid.py"),
    )
] + [("redis/", "redis-py"), ("simple_websocket/", "simple-websocket")]
PROJECT_ROOT = f"{Path(__file__).resolve().parents[1]}/"


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


class Profiler:
    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir = run_dir
        self.binary = py_spy() if enabled else None
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.results: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return self.binary is not None

    def start(
        self,
        label: str,
        pids: list[int],
        duration_s: float | None = None,
        subprocesses: bool = False,
    ) -> None:
        """Sample the first of `pids` in the background, for `duration_s` or until `finish`
        (and its children too with `subprocesses`: all of gunicorn's workers)."""
        if self.binary is None or not pids:
            return
        pid = pids[0]
        out = self.run_dir / f"profile-{label}.txt"
        limit = ["--duration", str(int(duration_s))] if duration_s else []
        argv = [
            self.binary,
            "record",
            "--pid",
            str(pid),
            *limit,
            *(["--subprocesses"] if subprocesses else []),
            "--rate",
            str(RATE_HZ),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        log = (self.run_dir / "logs" / f"py-spy-{label}.log").open("wb")
        self.running[label] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), out)
        log.close()

    def finish(self, label: str, timeout_s: float = 30) -> dict[str, Any] | None:
        entry = self.running.pop(label, None)
        if entry is None:
            return None
        process, out = entry
        if isinstance(process.args, list) and "--duration" not in process.args:
            # open-ended: Ctrl-C makes py-spy write its output and stop
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not out.exists():
            return None
        result = summarize(out.read_text())
        if result.get("samples"):
            result["files"] = [out.name]
        self.results[label] = result
        return result

    def stop_all(self) -> None:
        for process, _ in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()


def summarize(raw: str) -> dict[str, Any]:
    """Samples by library (self time) and the functions most often on the stack."""
    by_library: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        total += count
        by_library[_library(stack.split(";")[-1])] += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not any(part in frame for part in PLUMBING):
                inclusive[frame] += count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_by_library_pct": _percent(by_library, total, len(by_library)),
        "self_top_pct": _percent(own, total, TOP),
        "inclusive_top_pct": _percent(inclusive, total, TOP * 2),
    }


def _function(frame: str) -> str:
    """'execute (sqlalchemy/engine/base.py:1418)' -> 'execute (sqlalchemy/engine/base.py)'."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({_short(path)})"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", PROJECT_ROOT):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _library(frame: str) -> str:
    for needle, name in LIBRARIES:
        if needle in frame:
            return name
    return "other (stdlib, C calls)"


def _percent(counter: Counter[str], total: int, top: int) -> list[list[Any]]:
    return [[name, round(count * 100 / total, 1)] for name, count in counter.most_common(top)]
