"""What the processes and servers cost, from their own counters.

A thread of the benchmark's own process samples each process group's CPU and memory once a
second, labelled by phase: on a 2-core machine "the CPU was full, and here is who used it" comes
first for any missed target. Each group also keeps a counter of the CPU seconds its processes
used (user + system with reaped children, so a PostgreSQL backend forked for one connection
counts in full): "CPU ms per order" is the difference of two readings (`Window`) over the orders.
Beside them: PostgreSQL's transactions and sessions in the bench database (`pg_stat_database`),
Redis's calls per command and connections (`INFO`, summed over the servers the stack uses).

The benchmark's own queries are counted by the stack and taken off. PostgreSQL flushes a
backend's statistics up to 10 s after it goes idle, so the closing reading waits `FLUSH_S`. The
Redis figures are server-wide (the clients of other databases seen are reported).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

INTERVAL_S = 1.0
FLUSH_S = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) and a margin
ENGINE_GROUPS = ("api", "worker", "scheduler")
TOP_COMMANDS = 8
# A group: a name and a function returning the pids at the root of its process trees.
RootPids = Callable[[], list[int]]
PACKAGES = ("celery", "kombu", "flask", "flask-sock", "simple-websocket", "sqlalchemy", "redis")
PACKAGES += ("psycopg", "gunicorn", "marshmallow", "wsproto", "psutil", "gevent")


class CpuCounter:
    """Cumulative CPU seconds (user + system, with reaped children's) of a set of processes.
    One born since the last reading counts from its birth, one already running when first seen
    from then. A gone process whose parent lives is in the parent's children times (its whole
    life), so what was counted for it is taken back: nothing twice, nothing a child did lost."""

    def __init__(self) -> None:
        self.total, self._last = 0.0, time.time()
        self.seen: set[tuple[int, float]] = set()
        self._known: dict[int, tuple[float, float, int]] = {}  # pid -> (born, cpu s, ppid)

    def update(self, processes: list[psutil.Process]) -> float:
        now, live = time.time(), {}
        for process in processes:
            try:
                with process.oneshot():
                    t, born, ppid = process.cpu_times(), process.create_time(), process.ppid()
            except psutil.Error:
                continue
            live[process.pid] = (
                born,
                t.user + t.system + t.children_user + t.children_system,
                ppid,
            )
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
    """Samples every group once a second (`samples`); `read()` its CPU counters at any time.
    `flat` groups are lists of processes, not roots of trees (no children added)."""

    def __init__(self, groups: dict[str, RootPids], flat: Collection[str] = ()) -> None:
        self.groups, self.flat, self.phase = groups, set(flat), "setup"
        self.samples: list[dict[str, Any]] = []
        self._known: dict[int, psutil.Process] = {}
        self._counters = {name: CpuCounter() for name in groups}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self.read()  # the counters' reference point
        self._thread.start()

    def read(self) -> dict[str, Any]:
        """Every group's CPU seconds so far, read now, and the processes each has seen."""
        with self._lock:
            cpu = {
                name: round(self._counted(name, roots)[1], 4) for name, roots in self.groups.items()
            }
            seen = {name: len(c.seen) for name, c in self._counters.items()}
        return {"t": time.time(), "cpu_s": cpu, "seen": seen}

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def _counted(self, name: str, roots: RootPids) -> tuple[list[psutil.Process], float]:
        processes = self._members(name, roots())
        return processes, self._counters[name].update(processes)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            with contextlib.suppress(psutil.Error):  # a process vanished mid-sample
                self.samples.append(self._sample())

    def _sample(self) -> dict[str, Any]:
        groups = {}
        with self._lock:
            for name, roots in self.groups.items():
                processes, cpu_s = self._counted(name, roots)
                groups[name] = {**self._group(processes), "cpu_s": round(cpu_s, 3)}
        cpu = psutil.cpu_percent(interval=None)
        return {"t": time.time(), "phase": self.phase, "cpu": cpu, "groups": groups}

    def _members(self, name: str, pids: list[int]) -> list[psutil.Process]:
        if name in self.flat:
            return [p for p in map(self._process, pids) if p is not None]
        found = []
        for root in filter(None, map(self._process, pids)):
            found.append(root)
            with contextlib.suppress(psutil.Error):
                found.extend(self._process(c.pid) or c for c in root.children(recursive=True))
        return found

    def _group(self, processes: list[psutil.Process]) -> dict[str, Any]:
        """% of one core since the last tick, RSS in MiB and threads, summed over the group."""
        cpu = rss = threads = 0.0
        for process in processes:
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(interval=None)
                    rss += process.memory_info().rss / 2**20
                    threads += process.num_threads()
            except psutil.Error:
                continue
        return {"cpu": round(cpu, 1), "rss_mb": round(rss, 1), "threads": int(threads)}

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
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children():
                with contextlib.suppress(psutil.Error):
                    if f" {needle} " in f" {' '.join(child.cmdline())} ":
                        found.append(child.pid)
    return found


def describe_machine(engine: Engine, redis_url: str) -> dict[str, Any]:
    """What the figures depend on: the machine, the versions, the servers' own versions."""
    with engine.connect() as conn:
        postgresql = conn.execute(text("SHOW server_version")).scalar_one()
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text() if cpuinfo.exists() else "")
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpu_model": models[0] if models else platform.processor(),
        "logical_cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "postgresql": postgresql,
        "redis_server": redis.Redis.from_url(redis_url).info("server").get("redis_version"),
        "packages": versions,
    }


def postgres(database_url: str) -> dict[str, Any]:
    """The bench database's counters, read from the server's `postgres` database (so the read
    adds no transaction to the bench database)."""
    url = make_url(database_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(url.render_as_string(False), autocommit=True, connect_timeout=10) as conn:
        sessions = "sessions" if conn.info.server_version >= 140000 else "NULL"
        row = conn.execute(
            f"SELECT xact_commit, xact_rollback, {sessions} "  # noqa: S608 - fixed text
            "FROM pg_stat_database WHERE datname = %s",
            (make_url(database_url).database,),
        ).fetchone()
    return {} if row is None else {"commits": row[0], "rollbacks": row[1], "sessions": row[2]}


def redis_servers(urls: list[str]) -> dict[str, redis.Redis]:
    """One client per distinct server (the app's and the broker's URLs may name one)."""
    clients = [redis.Redis.from_url(u) for u in urls if u.startswith(("redis", "unix://"))]
    return {str(c.info("server")["run_id"]): c for c in reversed(clients)}


def redis_reading(servers: dict[str, redis.Redis], own_dbs: set[int]) -> dict[str, Any]:
    """Calls per command and connections received, summed over the servers; the clients
    connected to other databases than the stack's (someone else's load on the server)."""
    calls: Counter[str] = Counter()
    connections = others = 0
    for client in servers.values():
        for key, value in client.info("commandstats").items():
            calls[key.removeprefix("cmdstat_")] += int(value["calls"])
        connections += int(client.info("stats")["total_connections_received"])
        others += sum(1 for c in client.client_list() if int(c.get("db", 0)) not in own_dbs)
    # These reads are counted by the next reading: 3 INFO + 1 CLIENT LIST each (`client|list`
    # in Redis 7's commandstats, `client` before).
    n = len(servers)
    own = {"info": 3 * n, "client|list": n, "client": n}
    return {"calls": dict(calls), "connections": connections, "other_clients": others, "own": own}


def reading(monitor: Any, stack: Any) -> dict[str, Any]:
    """Everything at one moment: CPU counters, PostgreSQL, Redis, the bench's own use."""
    pg = postgres(stack.database_url) if stack.database_url else {}
    rd = redis_reading(stack.redis_clients, stack.redis_dbs) if stack.redis_clients else {}
    return {"cpu": monitor.read(), "postgres": pg, "redis": rd, "own": dict(stack.own_usage)}


def cost(
    before: dict[str, Any], cpu_after: dict[str, Any], after: dict[str, Any], orders: int
) -> dict[str, Any]:
    """Per-order figures between two readings: `cpu_after` is taken at the end of the load
    (Redis is read with it), `after` `FLUSH_S` later (so PostgreSQL's counters are complete)."""
    n = max(orders, 1)
    cpu0, cpu1 = before["cpu"], cpu_after["cpu"]
    ms = {g: (cpu1["cpu_s"].get(g, 0.0) - cpu0["cpu_s"].get(g, 0.0)) * 1000 for g in cpu1["cpu_s"]}
    per_order = {g: round(v / n, 2) for g, v in ms.items()}
    per_order["engine"] = round(sum(ms.get(g, 0.0) for g in ENGINE_GROUPS) / n, 2)
    seen = "postgres_bench"
    result: dict[str, Any] = {
        "orders": orders,
        "window_s": round(cpu1["t"] - cpu0["t"], 1),
        "cpu_ms_per_order": per_order,
        "backends_seen": cpu1["seen"].get(seen, 0) - cpu0["seen"].get(seen, 0),
    }
    own = Counter(after["own"])
    own.subtract(before["own"])
    pg0, pg1 = before["postgres"], after["postgres"]
    if pg0 and pg1:
        sessions = None
        if pg1.get("sessions") is not None:
            sessions = pg1["sessions"] - pg0["sessions"] - own["pg_connects"]
        result["postgres"] = {
            "commits_per_order": round(
                (pg1["commits"] - pg0["commits"] - own["pg_commits"]) / n, 2
            ),
            "rollbacks_per_order": round(
                (pg1["rollbacks"] - pg0["rollbacks"] - own["pg_rollbacks"]) / n, 2
            ),
            "sessions_opened": sessions,
            "sessions_source": "pg_stat_database.sessions"
            if sessions is not None
            else "backends seen by the monitor (lower bound)",
            "bench_own_transactions": own["pg_commits"] + own["pg_rollbacks"],
        }
    rd0, rd1 = before["redis"], cpu_after.get("redis") or after["redis"]
    if rd0 and rd1:
        calls = Counter(rd1["calls"])
        calls.subtract(rd0["calls"])
        calls.subtract(rd0["own"])  # the first reading's own INFO / CLIENT LIST calls
        calls.subtract({k.removeprefix("redis:"): v for k, v in own.items() if k[:6] == "redis:"})
        calls = Counter({k: v for k, v in calls.items() if v > 0})
        result["redis"] = {
            "commands_per_order": round(sum(calls.values()) / n, 2),
            "top": [[c, v, round(v / n, 2)] for c, v in calls.most_common(TOP_COMMANDS)],
            "connections_opened": rd1["connections"]
            - rd0["connections"]
            - own["redis_connections"],
            "other_clients": max(rd0["other_clients"], rd1["other_clients"]),
        }
    return result


class Window:
    """`start()` before the load, `load_done()` when the last order is terminal, then
    `finish(orders)` (which waits for PostgreSQL's statistics to be flushed)."""

    def __init__(self, monitor: Any, stack: Any) -> None:
        self.monitor, self.stack = monitor, stack
        self.before: dict[str, Any] = {}
        self.at_end: dict[str, Any] | None = None

    def start(self) -> None:
        self.before = reading(self.monitor, self.stack)

    def load_done(self) -> None:
        stack = self.stack
        rd = redis_reading(stack.redis_clients, stack.redis_dbs) if stack.redis_clients else {}
        self.at_end = {"cpu": self.monitor.read(), "redis": rd}

    def finish(self, orders: int) -> dict[str, Any]:
        if self.at_end is None:
            self.load_done()
        time.sleep(FLUSH_S)
        return cost(self.before, self.at_end or {}, reading(self.monitor, self.stack), orders)
