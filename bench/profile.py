"""Optional sampling profiles (`--profile`) of a server process while it is under load.

py-spy (the `bench` extra) attaches to a running process without stopping it (--nonblocking)
and samples the threads on a CPU (idle ones are left out: py-spy's default). Not `--gil`
(the thread holding the GIL): under gevent the thread that holds the GIL is often one waiting
in the hub at a switch point, and such profiles counted about twice the process's measured
CPU. The summary groups the samples by library, which answers "what does a request spend its
CPU on" in one table. In the run folder, for each profile:

- `profile-<label>.txt`: the raw stacks, one collapsed stack per line with its count (the input
  of flamegraph.pl / inferno, and speedscope opens it too);
- `profile-<label>.speedscope.json`: open it at https://www.speedscope.app (left heavy, sandwich);
- `profile-<label>.top.txt`: the functions by own CPU (self) and by inclusive time, and the
  libraries by own CPU.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 100
# Frames on nearly every stack (thread pools, server loops, framework dispatch) say nothing.
PLUMBING = (
    "threading.py",
    "concurrent/futures/",
    "gunicorn/workers/",
    "flask/app.py",
    "contextlib.py",
    "celery/app/trace.py",
    "celery/concurrency/",
    "order_engine/tasking/app.py",
    "celery/app/autoretry.py",
    "flask_sock/",
)
TOP = 15
LIBRARIES = (
    ("order_engine/", "order_engine"),
    ("workers/", "workers"),
    ("sqlalchemy/", "sqlalchemy"),
    ("psycopg", "psycopg"),
    ("celery/", "celery"),
    ("kombu/", "kombu"),
    ("redis/", "redis-py"),
    ("flask/", "flask"),
    ("werkzeug/", "werkzeug"),
    ("gunicorn/", "gunicorn"),
    ("marshmallow/", "marshmallow"),
    ("simple_websocket/", "simple-websocket"),
    ("wsproto/", "wsproto"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("threading.py", "threading"),
    ("queue.py", "queue"),
    ("socket.py", "socket"),
    ("selectors.py", "selectors"),
    ("ssl.py", "ssl"),
    ("uuid.py", "uuid"),
)


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
        raw = out.read_text()
        result = summarize(raw)
        if result.get("samples"):
            out.with_suffix(".speedscope.json").write_text(json.dumps(speedscope(raw, label)))
            out.with_suffix(".top.txt").write_text(top_text(raw, label))
            result["files"] = [
                out.name,
                out.with_suffix(".speedscope.json").name,
                out.with_suffix(".top.txt").name,
            ]
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


def speedscope(raw: str, name: str) -> dict[str, Any]:
    """The collapsed stacks as a speedscope "sampled" profile (weights in samples)."""
    index: dict[str, int] = {}
    frames: list[dict[str, Any]] = []
    samples: list[list[int]] = []
    weights: list[int] = []
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        ids = []
        for frame in stack.split(";"):
            if frame not in index:
                fname, _, where = frame.partition(" (")
                file, _, line_no = where.rstrip(")").rpartition(":")
                entry: dict[str, Any] = {"name": fname, "file": _short(file or where.rstrip(")"))}
                if line_no.isdigit():
                    entry["line"] = int(line_no)
                index[frame] = len(frames)
                frames.append(entry)
            ids.append(index[frame])
        samples.append(ids)
        weights.append(int(count_text))
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "exporter": "bench.profile",
    }


def top_text(raw: str, label: str, top: int = 30) -> str:
    """A plain-text top-N: functions by own CPU, by inclusive time, libraries by own CPU."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        frames = [_function(frame) for frame in parts]
        total += count
        own[frames[-1]] += count
        libraries[_library(parts[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"py-spy profile {label}: {total} samples at {RATE_HZ} Hz (threads on a CPU)", ""]
    for title, counter in (
        ("functions by own CPU (self)", own),
        ("functions by inclusive time (on the stack)", inclusive),
        ("libraries by own CPU (self)", libraries),
    ):
        lines += [title, "-" * len(title)]
        lines += [
            f"{count * 100 / total:6.1f} %  {count:7d}  {name}"
            for name, count in counter.most_common(top)
        ]
        lines.append("")
    return "\n".join(lines)


def _function(frame: str) -> str:
    """'execute (sqlalchemy/engine/base.py:1418)' -> 'execute (sqlalchemy/engine/base.py)'."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({_short(path)})"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
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
