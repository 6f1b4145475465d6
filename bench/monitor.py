"""What the processes and servers cost, from their own counters.

A thread of the benchmark's own process (which generates no load) samples each process group's
CPU and memory once a second, labelled by phase: on a 2-core machine, "the CPU was full, and
here is who used it" is the first thing to know about any missed target. Each group also keeps
a counter of the CPU seconds its processes used (user + system with reaped children, so a
PostgreSQL backend forked for one connection counts in full): "CPU ms per order" is the
difference of two readings (`Window`) divided by the orders. Beside them, PostgreSQL's
transactions and sessions in the bench database (`pg_stat_database`) and Redis's calls per
command and connections (`INFO`, summed over the servers the stack uses).

The benchmark's own queries are counted by the stack and taken off. PostgreSQL flushes a
backend's statistics up to 10 s after it goes idle, so the closing reading waits `FLUSH_S`. The
Redis figures are server-wide (the other clients seen are reported), which is why a MONITOR tap
(`RedisTap`, `--redis-tap`) can also count only the commands sent to the stack's own databases,
split into those clients sent and those Lua scripts ran. `describe_machine` records what the
figures depend on.
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


FLUSH_S = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) and a margin
ENGINE_GROUPS = ("api", "worker", "scheduler")
TOP_COMMANDS = 8


def postgres(database_url: str) -> dict[str, Any]:
    """The bench database's counters, read from the server's `postgres` database (so the read
    adds no transaction to the bench database)."""
    url = make_url(database_url).set(drivername="postgresql", database="postgres")
    admin, database = url.render_as_string(hide_password=False), make_url(database_url).database
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        version = conn.info.server_version
        sessions = "sessions" if version >= 140000 else "NULL"
        row = conn.execute(
            f"SELECT xact_commit, xact_rollback, {sessions} "  # noqa: S608 - fixed text
            "FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    if row is None:
        return {}
    return {"commits": row[0], "rollbacks": row[1], "sessions": row[2], "version": version}


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
        stats = client.info("commandstats")
        for key, value in stats.items():
            calls[key.removeprefix("cmdstat_")] += int(value["calls"])
        connections += int(client.info("stats")["total_connections_received"])
        others += sum(1 for c in client.client_list() if int(c.get("db", 0)) not in own_dbs)
    # These reads are themselves counted by the next reading: 3 INFO + 1 CLIENT LIST each
    # (`client|list` in Redis 7's commandstats, `client` before).
    return {
        "calls": dict(calls),
        "connections": connections,
        "other_clients": others,
        "own": {"info": 3 * len(servers), "client|list": len(servers), "client": len(servers)},
    }


def reading(monitor: Any, stack: Any) -> dict[str, Any]:
    """Everything at one moment: CPU counters, PostgreSQL, Redis, the bench's own use."""
    cpu = monitor.read()
    pg = postgres(stack.database_url) if stack.database_url else {}
    rd = redis_reading(stack.redis_clients, stack.redis_dbs) if stack.redis_clients else {}
    return {"cpu": cpu, "postgres": pg, "redis": rd, "own": dict(stack.own_usage)}


def cost(
    before: dict[str, Any], cpu_after: dict[str, Any], after: dict[str, Any], orders: int
) -> dict[str, Any]:
    """Per-order figures between two readings: `cpu_after` is taken at the end of the load
    (Redis is read with it), `after` `FLUSH_S` later (so PostgreSQL's counters are complete)."""
    n = max(orders, 1)
    cpu0, cpu1 = before["cpu"], cpu_after["cpu"]
    seconds = cpu1["t"] - cpu0["t"]
    ms = {g: (cpu1["cpu_s"].get(g, 0.0) - cpu0["cpu_s"].get(g, 0.0)) * 1000 for g in cpu1["cpu_s"]}
    per_order = {g: round(v / n, 2) for g, v in ms.items()}
    per_order["engine"] = round(sum(ms.get(g, 0.0) for g in ENGINE_GROUPS) / n, 2)
    seen = "postgres_bench"
    result: dict[str, Any] = {
        "orders": orders,
        "window_s": round(seconds, 1),
        "cpu_ms_per_order": per_order,
        "backends_seen": cpu1["seen"].get(seen, 0) - cpu0["seen"].get(seen, 0),
    }
    own = Counter(after["own"])
    own.subtract(before["own"])
    pg0, pg1 = before["postgres"], after["postgres"]
    if pg0 and pg1:
        commits = pg1["commits"] - pg0["commits"] - own["pg_commits"]
        rollbacks = pg1["rollbacks"] - pg0["rollbacks"] - own["pg_rollbacks"]
        sessions = None
        if pg1.get("sessions") is not None:
            sessions = pg1["sessions"] - pg0["sessions"] - own["pg_connects"]
        result["postgres"] = {
            "commits_per_order": round(commits / n, 2),
            "rollbacks_per_order": round(rollbacks / n, 2),
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
        total = sum(calls.values())
        result["redis"] = {
            "commands_per_order": round(total / n, 2),
            "top": [[c, v, round(v / n, 2)] for c, v in calls.most_common(TOP_COMMANDS)],
            "connections_opened": rd1["connections"]
            - rd0["connections"]
            - own["redis_connections"],
            "other_clients": max(rd0["other_clients"], rd1["other_clients"]),
        }
    return result


class RedisTap:
    """MONITOR on each server, counting the commands sent to the stack's databases.

    MONITOR costs the server per command (it formats each one for the tap) and the tap parses
    each: about 1 ms of CPU per order between them at the benchmark's rates, so it runs only
    when asked (`--redis-tap`)."""

    def __init__(self, servers: dict[str, redis.Redis], dbs: set[int]) -> None:
        self.servers, self.dbs = servers, dbs
        self.client: Counter[str] = Counter()
        self.script: Counter[str] = Counter()
        self.others = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: list[Any] = []

    def start(self) -> None:
        for client in self.servers.values():
            conn = client.connection_pool.make_connection()
            conn.connect()
            conn.send_command("MONITOR")
            conn.read_response()  # OK
            self._connections.append(conn)
            thread = threading.Thread(target=self._read, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for conn in self._connections:
            conn.disconnect()
        return {
            "client": dict(self.client),
            "script": dict(self.script),
            "other_databases": self.others,
            "monitor_calls": len(self._connections),
        }

    def _read(self, conn: Any) -> None:
        while not self._stop.is_set():
            try:
                if not conn.can_read(timeout=0.2):
                    continue
                line = conn.read_response()
            except (redis.RedisError, OSError):
                return
            self._count(line.decode(errors="replace") if isinstance(line, bytes) else str(line))

    def _count(self, line: str) -> None:
        # 1700000000.123456 [12 127.0.0.1:54321] "publish" "order:…" "…"   ([12 lua] in scripts)
        head, _, rest = line.partition("] ")
        db_text, _, source = head.partition("[")[2].partition(" ")
        if not db_text.isdigit() or int(db_text) not in self.dbs:
            self.others += 1
            return
        command = rest.split('"', 2)[1].lower() if rest.startswith('"') else rest
        (self.script if source == "lua" else self.client)[command] += 1


class Window:
    """`start()` before the load, `load_done()` when the last order is terminal, then
    `finish(orders)` (which waits for PostgreSQL's statistics to be flushed)."""

    def __init__(self, monitor: Any, stack: Any, tap: bool = False) -> None:
        self.monitor, self.stack, self.with_tap = monitor, stack, tap
        self.before: dict[str, Any] | None = None
        self.at_end: dict[str, Any] | None = None
        self.tap: RedisTap | None = None
        self.tapped: dict[str, Any] | None = None

    def start(self) -> None:
        self.before = reading(self.monitor, self.stack)
        if self.with_tap and self.stack.redis_clients:
            self.tap = RedisTap(self.stack.redis_clients, self.stack.redis_dbs)
            self.tap.start()
            self.before["own"] = dict(self.stack.own_usage)  # after the tap's start

    def load_done(self) -> None:
        stack = self.stack
        if self.tap is not None and self.tapped is None:
            self.tapped = self.tap.stop()
            stack.own_usage["redis:monitor"] += self.tapped["monitor_calls"]
            stack.own_usage["redis_connections"] += self.tapped["monitor_calls"]
        rd = redis_reading(stack.redis_clients, stack.redis_dbs) if stack.redis_clients else {}
        self.at_end = {"cpu": self.monitor.read(), "redis": rd}

    def finish(self, orders: int) -> dict[str, Any]:
        if self.at_end is None:
            self.load_done()
        time.sleep(FLUSH_S)
        result = cost(
            self.before or {}, self.at_end or {}, reading(self.monitor, self.stack), orders
        )
        if self.tapped is not None and "redis" in result:
            result["redis"]["stack_databases"] = _tapped(
                self.tapped, self.stack.own_usage, self.before["own"], orders
            )
        return result


def _tapped(
    tapped: dict[str, Any], own_now: dict[str, int], own_before: dict[str, int], orders: int
) -> dict[str, Any]:
    """The MONITOR counts per order: what clients sent, what scripts ran, the top ones."""
    n = max(orders, 1)
    client = Counter(tapped["client"])
    client["llen"] -= own_now.get("redis:llen", 0) - own_before.get("redis:llen", 0)
    client = Counter({k: v for k, v in client.items() if v > 0})
    script = Counter(tapped["script"])
    sent, ran = sum(client.values()), sum(script.values())
    return {
        "sent_per_order": round(sent / n, 2),
        "in_scripts_per_order": round(ran / n, 2),
        "total_per_order": round((sent + ran) / n, 2),
        "top_sent": [[c, v, round(v / n, 2)] for c, v in client.most_common(TOP_COMMANDS)],
        "top_in_scripts": [[c, v, round(v / n, 2)] for c, v in script.most_common(4)],
        "other_databases_commands": tapped["other_databases"],
    }
