"""Optional sampling profiles (`--profile`): py-spy attaches to a server process under load
(--nonblocking) and samples its threads on a CPU. Not `--gil`: under gevent the thread holding
the GIL is often one waiting in the hub, and such profiles counted about twice the process's
measured CPU. The summary groups own CPU by library ("what does a request spend its CPU on");
the raw collapsed stacks stay in the run folder (flamegraph.pl and speedscope open them).
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


class Profiler:
    """py-spy processes by label: `start` one per process under load, `finish` it for its
    summary (or let it end at its `--duration`); `stop_all` on the way out."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.run_dir = run_dir
        self.binary = found if enabled and Path(found).exists() else None
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    @property
    def enabled(self) -> bool:
        return self.binary is not None

    def start(
        self, label: str, pids: list[int], duration_s: float = 0, subprocesses: bool = False
    ) -> None:
        """Sample the first of `pids` in the background, for `duration_s` or until `finish`
        (and its children too with `subprocesses`: all of gunicorn's workers)."""
        if self.binary is None or not pids:
            return
        out = self.run_dir / f"profile-{label}.txt"
        argv = [self.binary, "record", "--pid", str(pids[0]), "--rate", str(RATE_HZ)]
        argv += ["--nonblocking", "--format", "raw", "--output", str(out)]
        argv += ["--duration", str(int(duration_s))] if duration_s else []
        argv += ["--subprocesses"] if subprocesses else []
        with (self.run_dir / "logs" / f"py-spy-{label}.log").open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.running[label] = (process, out)

    def finish(self, label: str, timeout_s: float = 30) -> dict[str, Any] | None:
        if label not in self.running:
            return None
        process, out = self.running.pop(label)
        if "--duration" not in process.args:  # type: ignore[operator]
            process.send_signal(signal.SIGINT)  # py-spy then writes its output and stops
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        result = summarize(out.read_text()) if out.exists() else None
        return result and {**result, "files": [out.name]}

    def stop_all(self) -> None:
        for process, _ in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()


def summarize(raw: str) -> dict[str, Any]:
    """Samples by library and the functions with the most own CPU (the frame on top)."""
    by_library: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            top = stack.split(";")[-1]
            by_library[_library(top)] += int(count_text)
            own[_function(top)] += int(count_text)
    total = sum(own.values())
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_by_library_pct": _percent(by_library, total, len(by_library)),
        "self_top_pct": _percent(own, total, TOP),
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
