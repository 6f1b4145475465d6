"""Sample CPU and memory of every process group once a second, labelled by phase; describe the
machine and the versions the figures depend on (`describe_machine`).

This runs as a thread of the benchmark's own process, which generates no load (the load
generators are separate processes), so the samples see the servers and the load generators
side by side: on a 2-core machine, "the CPU was full, and here is who used it" is the first
thing to know about any missed target.

Beside those rates it keeps, per group, a counter of the CPU seconds its processes used
(`cpu_s`), read from each process's own counters (user + system, plus its reaped children's):
the figure "CPU milliseconds per order" is the difference of two readings divided by the
orders. A short-lived child (a PostgreSQL backend forked for one connection) is counted in
full through its parent's children times even when no tick ever saw it; `read()` takes a
reading at an exact moment (a phase's start and end) instead of waiting for the next tick.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Collection
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

INTERVAL_S = 1.0

# A group: a name and a function returning the pids at the root of its process trees.
RootPids = Callable[[], list[int]]
PACKAGES = ("celery", "kombu", "flask", "flask-sock", "simple-websocket", "sqlalchemy", "redis")
PACKAGES += ("psycopg", "gunicorn", "marshmallow", "wsproto", "psutil", "gevent")


class CpuCounter:
    """Cumulative CPU seconds of a set of processes, kept up to date by `update`.

    A process's own counter is user + system + its reaped children's user + system. A process
    first seen after it was born since the previous reading is counted from its birth; one
    already running when first seen (the machine's PostgreSQL) from that moment. When a
    process is gone and its parent is among the live ones, the parent has reaped it (or will)
    and its children times take the process's whole life, so what was counted for it is
    taken back: nothing is counted twice, and nothing a reaped child did is lost.
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.seen: set[tuple[int, float]] = set()
        self._known: dict[int, tuple[float, float, int]] = {}  # pid -> (born, cpu s, ppid)
        self._last = time.time()

    def update(self, processes: list[psutil.Process]) -> float:
        now = time.time()
        live: dict[int, tuple[float, float, int]] = {}
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    born, ppid = process.create_time(), process.ppid()
            except psutil.Error:
                continue
            used = times.user + times.system + times.children_user + times.children_system
            live[process.pid] = (born, used, ppid)
            self.seen.add((process.pid, born))
        for pid, (born, used, _) in live.items():
            old = self._known.get(pid)
            if old is not None and old[0] == born:
                self.total += used - old[1]
            elif born >= self._last - 0.05:
                self.total += used
        for pid, (born, used, ppid) in self._known.items():
            if live.get(pid, (None,))[0] != born and ppid in live:
                self.total -= used
        self._known, self._last = live, now
        return self.total


class Monitor:
    def __init__(self, groups: dict[str, RootPids], flat: Collection[str] = ()) -> None:
        """`flat` groups are lists of processes, not roots of trees (no children added)."""
        self.groups = groups
        self.flat = set(flat)
        self.samples: list[dict[str, Any]] = []
        self.phase = "setup"
        self._known: dict[int, psutil.Process] = {}
        self._counters = {name: CpuCounter() for name in groups}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self.read()  # the counters' reference point
        self._thread.start()

    def read(self) -> dict[str, Any]:
        """Every group's CPU seconds so far, read now, and the processes each has seen."""
        with self._lock:
            cpu = {}
            for name, roots in self.groups.items():
                processes = self._members(name, roots())
                cpu[name] = round(self._counters[name].update(processes), 4)
            return {
                "t": time.time(),
                "cpu_s": cpu,
                "seen": {name: len(c.seen) for name, c in self._counters.items()},
            }

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def phase_samples(self, phase: str) -> list[dict[str, Any]]:
        return [s for s in self.samples if s["phase"] == phase]

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                self.samples.append(self._sample())
            except psutil.Error:
                continue  # a process vanished mid-sample; the next tick will be consistent

    def _sample(self) -> dict[str, Any]:
        groups = {}
        with self._lock:
            for name, roots in self.groups.items():
                processes = self._members(name, roots())
                groups[name] = self._group(processes)
                groups[name]["cpu_s"] = round(self._counters[name].update(processes), 3)
        return {
            "t": time.time(),
            "phase": self.phase,
            "cpu": psutil.cpu_percent(interval=None),
            "groups": groups,
        }

    def _members(self, name: str, pids: list[int]) -> list[psutil.Process]:
        if name in self.flat:
            return [p for p in (self._process(pid) for pid in pids) if p is not None]
        return self._trees(pids)

    def _group(self, processes: list[psutil.Process]) -> dict[str, Any]:
        procs = []
        for process in processes:
            try:
                with process.oneshot():
                    procs.append(
                        [
                            process.pid,
                            process.cpu_percent(interval=None),
                            process.memory_info().rss / 2**20,
                            process.num_threads(),
                        ]
                    )
            except psutil.Error:
                continue
        return {
            "cpu": round(sum(p[1] for p in procs), 1),
            "rss_mb": round(sum(p[2] for p in procs), 1),
            "threads": sum(p[3] for p in procs),
            "procs": [
                [pid, round(cpu, 1), round(rss, 1), threads] for pid, cpu, rss, threads in procs
            ],
        }

    def _trees(self, root_pids: list[int]) -> list[psutil.Process]:
        found = []
        for pid in root_pids:
            root = self._process(pid)
            if root is None:
                continue
            found.append(root)
            try:
                found.extend(self._process(c.pid) or c for c in root.children(recursive=True))
            except psutil.Error:
                continue
        return found

    def _process(self, pid: int) -> psutil.Process | None:
        """The same Process object every tick, so cpu_percent measures since the last one."""
        process = self._known.get(pid)
        if process is None or not process.is_running():
            try:
                process = self._known[pid] = psutil.Process(pid)
            except psutil.Error:
                return None
        return process


def children_titled(root_pids: list[int], needle: str) -> list[int]:
    """Children of these roots whose process title has `needle`: a PostgreSQL server's
    backends connected to one database ("postgres: user dbname host(port) state")."""
    found = []
    for pid in root_pids:
        try:
            children = psutil.Process(pid).children()
        except psutil.Error:
            continue
        for child in children:
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if f" {needle} " in f" {title} ":
                found.append(child.pid)
    return found


def describe_machine(engine: Engine, redis_url: str) -> dict[str, Any]:
    """What the figures depend on: the machine, the versions, the servers' own versions."""
    with engine.connect() as conn:
        postgresql = conn.execute(text("SHOW server_version")).scalar_one()
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if "model name" in line),
        platform.processor() or "unknown",
    )
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "postgresql": postgresql,
        "redis_server": redis.Redis.from_url(redis_url).info("server").get("redis_version"),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
