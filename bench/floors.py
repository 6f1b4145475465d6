"""`python -m bench.floors [--n 2000]`: what the machinery under the engine costs per operation
with the engine taken out: the measured floor under a cost-per-order target.

Against the bench stack (`bench.stack`: the embedded servers, or DATABASE_URL / REDIS_URL), each
floor is one operation repeated `n` times, and its cost is the difference of the process
groups' own CPU counters (`bench.monitor`, user + system) and of Redis's `INFO commandstats`
(`bench.counters`) before and after, divided by `n`; the client's CPU is what its own process
used for the loop (`bench.floors_load`), and Redis's commands per operation.

1. Celery: `bench.floor` (a no-op with `orders.execute_order`'s options) sent through the
   project's direct Redis sender (dispatch.py) to the project's worker (its command line, pool
   and concurrency, no scheduler): once as configured, once at LOG_LEVEL=WARNING, once with
   one `retry(countdown=…)` per task.
2. API: the project's gunicorn command line serving `bench.web`: POST /floor/noop (202)
   and a WebSocket that sends one message and closes, each through the project's app and
   through a bare Flask app, `--connections` at a time (the peer preset's 50).
3. PostgreSQL: INSERT + COMMIT of an order row, and an autocommit UPDATE … RETURNING, through
   psycopg and through SQLAlchemy Core on an engine built as the worker's.
4. Redis: EVALSHA of a one-SET script; PUBLISH to a channel with one subscriber.
5. JSON-RPC: getSignatureStatuses of one signature through the project's chain client to the
   project's localnet.

Each floor runs `--repeat` times (default 2); the table gives the lowest figure of each cell
and the spread of the servers' total. It is printed and written to
bench/results/<run>/floors.md (floors.json has every repeat).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import make_url

from bench import counters, procs
from bench.monitor import Monitor, describe_machine
from bench.plan import ZERO_LATENCY
from bench.stack import Stack, monitor_groups
from order_engine.ops.launch import LaunchError, child_settings, free_port

log = logging.getLogger("bench.floors")

FLOORS = ("celery", "api", "pg", "redis", "rpc")
RETRY_COUNTDOWN_S = 0.05
WARMUP = 200
DRAIN_TIMEOUT_S = 120
PUBLISH_CHANNEL = "floor:channel"
REDIS_CALLS_FACTOR = 5


class Floors:
    """The stack, the sampler and the results of one `python -m bench.floors` run."""

    def __init__(self, stack: Stack, monitor: Monitor, args: argparse.Namespace) -> None:
        self.stack, self.monitor = stack, monitor
        self.n, self.repeat, self.connections = args.n, args.repeat, args.connections
        self.rows: list[dict[str, Any]] = []
        self._start: dict[str, Any] = {}  # the reading that opens the current window
        self.machine: dict[str, Any] = {}

    def measure(self, label: str, per: str, load: Callable[[], dict[str, Any]]) -> None:
        """Run `load` `repeat` times between two readings each; keep every repeat."""
        repeats = []
        for _ in range(self.repeat):
            self._start = counters.reading(self.monitor, self.stack)
            client = load()
            after = counters.reading(self.monitor, self.stack)
            done = client.get("completed", client.get("n", 0))
            if "error" in client or not done:
                raise RuntimeError(f"{label}: {client.get('error') or client}")
            repeats.append(per_operation(self._start, after, done, client))
        self.rows.append({"floor": label, "per": per, "repeats": repeats})
        log.info("%s: %s", label, json.dumps(lowest(repeats)))

    def loop(
        self,
        target: str,
        spec: dict[str, Any],
        settle: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """A `bench.floors_load` loop in its own process: set up, then (readings taken
        around it by `measure`) run; `settle` waits for the servers to finish the work."""
        ready, go = procs.new_event(), procs.new_event()
        out = self.stack.run_dir / "raw" / f"{target.rpartition('.')[2]}-{time.time_ns()}.json"
        child = procs.Child(f"bench.floors_load.{target}", (spec, ready, go), out).start()
        deadline = time.monotonic() + 90
        while not ready.wait(0.2):
            if not child.process.is_alive() or time.monotonic() > deadline:
                return child.result(1)
        # The window starts now: the child's imports and set-up are left out.
        self._start = counters.reading(self.monitor, self.stack)
        go.set()
        result = child.result(DRAIN_TIMEOUT_S)
        if settle is not None and "error" not in result:
            settle()
        return result

    # -- 1. Celery ----------------------------------------------------------------------------

    def celery(self) -> None:
        stack = self.stack
        variants = (
            ("Celery task, no-op (as configured)", {}, {}),
            ("Celery task, no-op, LOG_LEVEL=WARNING", {"LOG_LEVEL": "WARNING"}, {}),
            (
                f"Celery task + 1 retry(countdown={RETRY_COUNTDOWN_S})",
                {},
                {"retry_countdown_s": RETRY_COUNTDOWN_S},
            ),
        )
        broker = redis.Redis.from_url(stack.broker_url)
        for label, overrides, kwargs in variants:
            stack.stop("worker", grace_s=5)
            stack.start_worker(overrides, with_scheduler=False)
            spec = {"env": self._env(), "kwargs": kwargs}

            def sends(count: int, spec: dict[str, Any] = spec) -> dict[str, Any]:
                return self.loop("celery_sends", {**spec, "n": count}, lambda: self._drain(broker))

            sends(WARMUP)
            self.measure(label, "task", lambda sends=sends: sends(self.n))
        stack.stop("worker", grace_s=5)

    def _drain(self, broker: redis.Redis) -> None:
        """Until the queue and kombu's unacked hash are empty twice in a row (a reserved
        message is briefly in neither)."""
        deadline, empty = time.monotonic() + DRAIN_TIMEOUT_S, 0
        while empty < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            queued = self.stack.queue_length()
            self.stack.own_usage["redis:hlen"] += 1
            empty = empty + 1 if not queued and not broker.hlen("unacked") else 0

    # -- 2. API -------------------------------------------------------------------------------

    def api(self) -> None:
        stack = self.stack
        for kind in ("project", "bare"):
            stack.wsgi_app = f"bench.web:create('{kind}')"
            stack.start_api()
            http = {"port": stack.port, "path": "/floor/noop", "tag": "floor", "duration_s": 120}
            self._http({**http, "concurrency": self.connections, "count": WARMUP})
            self.measure(
                f"POST no-op 202, {kind} app",
                "request",
                lambda http=http: self._http(
                    {**http, "concurrency": self.connections, "count": self.n}
                ),
            )
            ws = {"port": stack.port, "path": "/floor/ws", "connections": self.connections}
            self._websockets({**ws, "n": WARMUP})
            self.measure(
                f"WebSocket open, 1 message, close, {kind} app",
                "socket",
                lambda ws=ws: self._websockets({**ws, "n": self.n}),
            )
            stack.stop("api")

    def _http(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = self.stack.run_dir / "raw" / f"floor-http-{time.time_ns()}.json"
        result = procs.Child("bench.loadgen.closed_loop", (spec,), out).start().result(180)
        if "error" in result:
            return result
        return {"n": spec["count"], "completed": sum(r[2] == 202 for r in result["records"])}

    def _websockets(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = self.stack.run_dir / "raw" / f"floor-ws-{time.time_ns()}.json"
        spec = {**spec, "deadline_s": 150}
        return procs.Child("bench.floors_load.websockets", (spec,), out).start().result(180)

    # -- 3. PostgreSQL, 4. Redis, 5. JSON-RPC ------------------------------------------------

    def pg(self) -> None:
        libpq = make_url(self.stack.database_url).set(drivername="postgresql")
        spec = {
            "env": self._env(),
            "n": self.n,
            "libpq_url": libpq.render_as_string(hide_password=False),
            "database_url": self.stack.database_url,
        }
        for driver in ("psycopg", "sqlalchemy"):
            for statement, label in (
                ("insert", "INSERT order row + COMMIT"),
                ("update", "UPDATE … RETURNING, autocommit"),
            ):
                run = {**spec, "driver": driver, "statement": statement}
                self.measure(
                    f"{label}, {driver}",
                    "statement",
                    lambda run=run: self.loop("pg_statements", run),
                )

    def redis(self) -> None:
        # A call costs Redis a few hundredths of a millisecond: 2,000 would be a few clock
        # ticks (10 ms) of its CPU counter, so these loops run REDIS_CALLS_FACTOR times longer.
        n = self.n * REDIS_CALLS_FACTOR
        spec = {"env": self._env(), "n": n, "channel": PUBLISH_CHANNEL}
        self.measure(
            "EVALSHA (script: one SET)",
            "call",
            lambda: self.loop("redis_calls", {**spec, "command": "evalsha"}),
        )
        subscriber = Subscriber(self.stack.redis_url, PUBLISH_CHANNEL)
        try:
            self.measure(
                "PUBLISH, 1 subscriber",
                "call",
                lambda: self.loop(
                    "redis_calls",
                    {**spec, "command": "publish"},
                    lambda: subscriber.wait_for(n),
                ),
            )
        finally:
            subscriber.close()

    def rpc(self) -> None:
        self.stack.start_localnet(ZERO_LATENCY)
        spec = {"n": self.n, "url": self.stack.localnet_url}
        self.measure(
            "getSignatureStatuses (1 signature), chain client → localnet",
            "call",
            lambda: self.loop("rpc_calls", spec),
        )
        self.stack.stop("localnet")

    def _env(self) -> dict[str, str]:
        env = self.stack.env()
        return {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}


class Subscriber:
    """One SUBSCRIBE connection, counting what it receives on a thread of this process."""

    def __init__(self, url: str, channel: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if self.pubsub.get_message(timeout=0.2) is not None:
                self.received += 1

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.received < count and time.monotonic() < deadline:
            time.sleep(0.05)
        self.received = 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.pubsub.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for chatty in ("pgserver", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    selected = args.only.split(",") if args.only else list(FLOORS)
    if unknown := set(selected) - set(FLOORS):
        raise SystemExit(f"unknown floors: {', '.join(sorted(unknown))}")
    run_dir = Path(args.out) / datetime.now().strftime("%Y%m%d-%H%M%S")
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "raw").mkdir()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = Stack(run_dir, free_port())
    monitor = Monitor(monitor_groups(stack), flat=("postgres_bench",))
    floors = Floors(stack, monitor, args)
    failed = False
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    try:
        stack.start_servers()
        floors.machine = describe_machine(stack.db, stack.redis_url)
        monitor.start()
        for name in FLOORS:
            if name in selected:
                log.info("floor %s", name)
                getattr(floors, name)()
    except (KeyboardInterrupt, LaunchError, RuntimeError) as error:
        log.error("stopped: %r; writing what was measured", error)
        failed = True
    finally:
        procs.stop_all()
        monitor.stop()
        stack.close()
    text = report(floors.rows, stack, floors.machine, args, load_at_start)
    print(text)
    (run_dir / "floors.md").write_text(text + "\n")
    (run_dir / "floors.json").write_text(json.dumps(floors.rows, indent=1))
    log.info("wrote %s", run_dir / "floors.md")
    return 1 if failed else 0


# The columns of the table: process groups of `bench.stack.monitor_groups`.
SERVER_GROUPS = ("api", "worker", "postgres_bench", "postgres", "redis", "localnet")


def per_operation(
    before: dict[str, Any], after: dict[str, Any], done: int, client: dict[str, Any]
) -> dict[str, Any]:
    """CPU ms per operation of each server group and the client, Redis commands per operation."""
    seconds = after["cpu"]["t"] - before["cpu"]["t"]
    cpu0, cpu1 = before["cpu"]["cpu_s"], after["cpu"]["cpu_s"]
    ms = {g: round((cpu1.get(g, 0) - cpu0.get(g, 0)) * 1000 / done, 4) for g in SERVER_GROUPS}
    redis_cost = counters.cost(before, after, after, done).get("redis", {})
    return {
        "n": done,
        "window_s": round(seconds, 2),
        "ops_per_s": round(done / (client.get("wall_s") or seconds), 1),
        "client_ms": round(client["client_cpu_s"] * 1000 / done, 4)
        if "client_cpu_s" in client
        else None,
        "cpu_ms": ms,
        "servers_ms": round(sum(v for g, v in ms.items() if g != "postgres_bench"), 4),
        "redis_commands": redis_cost.get("commands_per_order"),
        "redis_top": redis_cost.get("top", [])[:4],
    }


def lowest(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's lowest value over the repeats, and the spread of the servers' total."""
    best = dict(repeats[0])
    for key in ("client_ms", "servers_ms", "redis_commands"):
        values = [r[key] for r in repeats if r[key] is not None]
        best[key] = min(values) if values else None
    best["cpu_ms"] = {g: min(r["cpu_ms"][g] for r in repeats) for g in SERVER_GROUPS}
    totals = [r["servers_ms"] for r in repeats]
    best["spread_pct"] = round((max(totals) / min(totals) - 1) * 100, 1) if min(totals) else None
    return best


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| floor | per | n | client ms | API ms | worker ms | PG backend ms | PG all ms | Redis ms "
        "| localnet ms | servers ms (spread) | Redis cmds |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        best = lowest(row["repeats"])
        cpu = best["cpu_ms"]
        cells = [
            row["floor"],
            row["per"],
            str(best["n"]),
            _ms(best["client_ms"]),
            *(_ms(cpu[g]) for g in SERVER_GROUPS),
            f"{_ms(best['servers_ms'])} ({best['spread_pct']} %)",
            "–" if best["redis_commands"] is None else f"{best['redis_commands']:g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def report(
    rows: list[dict[str, Any]],
    stack: Any,
    about: dict[str, Any],
    args: Any,
    load_at_start: list[float],
) -> str:
    """The heading (plan, machine, versions, load) and the table."""
    settings = child_settings(stack.env())
    pool = f"{settings.worker_pool} ×{settings.worker_concurrency}"
    versions = ", ".join(
        f"{name} {about.get(key) or about.get('packages', {}).get(key)}"
        for name, key in (
            ("PostgreSQL", "postgresql"),
            ("Redis", "redis_server"),
            ("Python", "python"),
            ("celery", "celery"),
            ("gunicorn", "gunicorn"),
            ("SQLAlchemy", "sqlalchemy"),
            ("psycopg", "psycopg"),
        )
    )
    return "\n".join(
        [
            f"# Floors: n = {args.n} per repeat, {args.repeat} repeats (lowest shown), "
            f"{args.connections} connections",
            "",
            f"CPU ms per operation (user + system, each process's own counters); worker pool "
            f"{pool}; servers: {stack.server_kind}; load average at start "
            f"{load_at_start}, at end {[round(x, 2) for x in os.getloadavg()]}; "
            f"{about.get('cpu_model')}, {about.get('logical_cores')} cores; {versions}. "
            "'servers ms' adds every server group (API, worker, all of PostgreSQL, Redis, "
            "localnet), not the client; its spread is max/min − 1 over the repeats.",
            "",
            table(rows),
        ]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="operations per repeat")
    parser.add_argument("--repeat", type=int, default=2, help="repeats of each floor")
    parser.add_argument("--connections", type=int, default=50, help="HTTP / WebSocket clients")
    parser.add_argument("--only", help=f"comma-separated floors, of: {','.join(FLOORS)}")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results"),
        help="results folder (a timestamped run folder is made inside)",
    )
    return parser


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
