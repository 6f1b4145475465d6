"""What an order costs, read from the servers' own counters over a window of a phase.

- CPU seconds of each process group (`bench.monitor`: each process's own counters).
- PostgreSQL, for the bench database only (`pg_stat_database`): transactions committed and
  rolled back, and sessions opened (PostgreSQL 14+; older servers: the backends the monitor
  saw, a lower bound, since a backend that lives less than a tick may never be seen).
- Redis, for every server the stack uses (the app's and the broker's, often the same one):
  `INFO commandstats` (calls per command) and `INFO stats` (connections received).

The benchmark's own queries over the window (its status polls, these reads) are counted by
the stack and taken off, so the figures are the engine's. PostgreSQL flushes a backend's
statistics at most once a second while it works and 10 s after it goes idle, so the closing
reading waits `FLUSH_S` after the load first. The Redis and PostgreSQL figures are
server-wide per database / per server: another client of the same Redis server (another
session's tests) would be counted too, which is why the other clients seen are reported, and
why a MONITOR tap (`RedisTap`, with `--redis-tap`) can also count, over the same window, only
the commands sent to the stack's own Redis databases, split into those clients sent and those
Lua scripts ran (`INFO commandstats` counts both: an EVALSHA and every call inside it).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

FLUSH_S = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) and a margin
ENGINE_GROUPS = ("api", "worker", "scheduler")
COST_GROUPS = (
    "api",
    "worker",
    "scheduler",
    "localnet",
    "postgres",
    "postgres_bench",
    "redis",
    "loadgen",
)
TOP_COMMANDS = 8


def admin_url(database_url: str) -> str:
    """A libpq URL for the server's `postgres` database: reading the statistics there adds
    no transaction to the bench database."""
    url = make_url(database_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


def postgres(admin: str, database: str) -> dict[str, Any]:
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
    servers: dict[str, redis.Redis] = {}
    for url in urls:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            continue
        client = redis.Redis.from_url(url)
        key = str(client.info("server").get("run_id"))
        servers.setdefault(key, client)
    return servers


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
    # These reads are themselves counted by the next reading: 3 INFO + 1 CLIENT LIST each.
    return {
        "calls": dict(calls),
        "connections": connections,
        "other_clients": others,
        "own": {"info": 3 * len(servers), "client|list": len(servers)},
    }


def reading(monitor: Any, stack: Any) -> dict[str, Any]:
    """Everything at one moment: CPU counters, PostgreSQL, Redis, the bench's own use."""
    cpu = monitor.read()
    pg = postgres(stack.admin_url, stack.database_name) if stack.database_url else {}
    rd = redis_reading(stack.redis_clients, stack.redis_dbs) if stack.redis_clients else {}
    return {"cpu": cpu, "postgres": pg, "redis": rd, "own": dict(stack.own_usage)}


def cost(
    before: dict[str, Any], cpu_after: dict[str, Any], after: dict[str, Any], orders: int
) -> dict[str, Any]:
    """Per-order figures between two readings.

    `cpu_after` is the CPU reading at the end of the load; `after` the full reading taken
    `FLUSH_S` later (so PostgreSQL's counters are complete). Redis is read with the CPU.
    """
    n = max(orders, 1)
    cpu0, cpu1 = before["cpu"], cpu_after["cpu"]
    seconds = cpu1["t"] - cpu0["t"]
    ms = {g: (cpu1["cpu_s"].get(g, 0.0) - cpu0["cpu_s"].get(g, 0.0)) * 1000 for g in cpu1["cpu_s"]}
    per_order = {g: round(v / n, 2) for g, v in ms.items()}
    per_order["engine"] = round(sum(ms.get(g, 0.0) for g in ENGINE_GROUPS) / n, 2)
    result: dict[str, Any] = {
        "orders": orders,
        "window_s": round(seconds, 1),
        "cpu_ms_per_order": per_order,
        "cpu_pct_of_core": {g: round(v / 10 / seconds, 1) for g, v in ms.items()}
        if seconds > 0
        else {},
        "backends_seen": cpu1["seen"].get("postgres_bench", 0)
        - cpu0["seen"].get("postgres_bench", 0),
    }
    own0, own1 = before["own"], after["own"]
    own = {k: own1.get(k, 0) - own0.get(k, 0) for k in own1}
    pg0, pg1 = before["postgres"], after["postgres"]
    if pg0 and pg1:
        commits = pg1["commits"] - pg0["commits"] - own.get("pg_commits", 0)
        rollbacks = pg1["rollbacks"] - pg0["rollbacks"] - own.get("pg_rollbacks", 0)
        sessions = None
        if pg1.get("sessions") is not None:
            sessions = pg1["sessions"] - pg0["sessions"] - own.get("pg_connects", 0)
        result["postgres"] = {
            "commits": commits,
            "rollbacks": rollbacks,
            "commits_per_order": round(commits / n, 2),
            "rollbacks_per_order": round(rollbacks / n, 2),
            "sessions_opened": sessions,
            "sessions_source": "pg_stat_database.sessions"
            if sessions is not None
            else "backends seen by the monitor (lower bound)",
            "bench_own_transactions": own.get("pg_commits", 0) + own.get("pg_rollbacks", 0),
        }
    rd0, rd1 = before["redis"], cpu_after.get("redis") or after["redis"]
    if rd0 and rd1:
        calls = Counter(rd1["calls"])
        calls.subtract(rd0["calls"])
        calls.subtract(rd0["own"])  # the first reading's own INFO / CLIENT LIST calls
        for command, count in own.items():
            if command.startswith("redis:"):
                calls[command.removeprefix("redis:")] -= count
        calls = Counter({k: v for k, v in calls.items() if v > 0})
        total = sum(calls.values())
        result["redis"] = {
            "commands": total,
            "commands_per_order": round(total / n, 2),
            "top": [[c, v, round(v / n, 2)] for c, v in calls.most_common(TOP_COMMANDS)],
            "connections_opened": rd1["connections"]
            - rd0["connections"]
            - own.get("redis_connections", 0),
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

    def finish(self, orders: int) -> dict[str, Any] | None:
        if self.before is None:
            return None
        if self.at_end is None:
            self.load_done()
        assert self.at_end is not None
        time.sleep(FLUSH_S)
        result = cost(self.before, self.at_end, reading(self.monitor, self.stack), orders)
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
        "sent": sent,
        "sent_per_order": round(sent / n, 2),
        "in_scripts": ran,
        "in_scripts_per_order": round(ran / n, 2),
        "total_per_order": round((sent + ran) / n, 2),
        "top_sent": [[c, v, round(v / n, 2)] for c, v in client.most_common(TOP_COMMANDS)],
        "top_in_scripts": [[c, v, round(v / n, 2)] for c, v in script.most_common(4)],
        "other_databases_commands": tapped["other_databases"],
    }
