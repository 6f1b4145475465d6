"""`python -m bench.floors [--n 2000]`: what the machinery under the engine costs per operation
with the engine taken out, the floor under a cost-per-order target. Each floor is one operation
repeated `n` times (a loop in a child, `bench.floors_load`, whose own CPU is the client's), its
cost the difference of each group's CPU counters and of Redis's commands before and after:
1. Celery: `bench.floor` through the project's direct Redis sender to the project's worker, as
   configured, at LOG_LEVEL=WARNING, and with one `retry(countdown=…)` per task;
2. API: `POST /floor/noop` and a one-message WebSocket through the project's app and a bare
   Flask app (`bench.web`) on the project's gunicorn command line, `--connections` at a time;
3. PostgreSQL: INSERT + COMMIT of an order row, an autocommit UPDATE … RETURNING, through
   psycopg and through SQLAlchemy Core on an engine built as the worker's;
4. Redis: EVALSHA of a one-SET script, PUBLISH to one subscriber (REDIS_CALLS_FACTOR times more
   calls: each costs Redis a few hundredths of a ms, a few 10 ms ticks over 2,000);
5. JSON-RPC: getSignatureStatuses through the project's chain client to the localnet.
Each runs `--repeat` times; floors.md gives each cell's lowest figure and the spread of the
servers' total (floors.json every repeat), in bench/results/<run>/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import make_url

from bench import loadgen
from bench.monitor import Monitor, cost, describe_machine, reading
from bench.plan import ZERO_LATENCY
from bench.report import floors_table
from bench.stack import Stack, session
from order_engine.ops.launch import LaunchError, child_settings

log = logging.getLogger("bench.floors")

FLOORS = ("celery", "api", "pg", "redis", "rpc")
RETRY_COUNTDOWN_S = 0.05
WARMUP = 200
DRAIN_TIMEOUT_S = 120
PUBLISH_CHANNEL = "floor:channel"
REDIS_CALLS_FACTOR = 5
# The columns of the table: process groups of `bench.stack.monitor_groups`.
SERVER_GROUPS = ("api", "worker", "postgres_bench", "postgres", "redis", "localnet")


class Floors:
    """The stack, the sampler and the results of one `python -m bench.floors` run."""

    def __init__(self, stack: Stack, monitor: Monitor, args: argparse.Namespace) -> None:
        self.stack, self.monitor = stack, monitor
        self.n, self.repeat, self.connections = args.n, args.repeat, args.connections
        self.rows: list[dict[str, Any]] = []
        self._start: dict[str, Any] = {}  # the reading that opens the current window

    def measure(
        self, label: str, per: str, load: Callable[[int], dict[str, Any]], warm: bool = False
    ) -> None:
        """Run `load(n)` `repeat` times between two readings each (after a `load(WARMUP)` with
        `warm`: the worker's and the API's first requests); keep every repeat."""
        if warm:
            load(WARMUP)
        repeats = []
        for _ in range(self.repeat):
            self._start = reading(self.monitor, self.stack)
            client = load(self.n)
            after = reading(self.monitor, self.stack)
            done = client.get("completed", client.get("n", 0))
            if "error" in client or not done:
                raise RuntimeError(f"{label}: {client.get('error') or client}")
            repeats.append(per_operation(self._start, after, done, client))
        self.rows.append({"floor": label, "per": per, "repeats": repeats})
        log.info("%s: %s", label, json.dumps(lowest(repeats)))

    def loop(
        self, target: str, spec: dict[str, Any], settle: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """A `bench.floors_load` loop in its own process: set up, then (readings taken
        around it by `measure`) run; `settle` waits for the servers to finish the work."""
        ready, go = loadgen.new_event(), loadgen.new_event()
        out = self.stack.run_dir / "raw" / f"{target}-{time.time_ns()}.json"
        child = loadgen.Child(f"bench.floors_load.{target}", (spec, ready, go), out).start()
        deadline = time.monotonic() + 90
        while not ready.wait(0.2):
            if not child.process.is_alive() or time.monotonic() > deadline:
                return child.result(1)
        # The window starts now: the child's imports and set-up are left out.
        self._start = reading(self.monitor, self.stack)
        go.set()
        result = child.result(DRAIN_TIMEOUT_S)
        if settle is not None and "error" not in result:
            settle()
        return result

    def celery(self) -> None:
        retry = {"retry_countdown_s": RETRY_COUNTDOWN_S}
        variants = (
            ("Celery task, no-op (as configured)", {}, {}),
            ("Celery task, no-op, LOG_LEVEL=WARNING", {"LOG_LEVEL": "WARNING"}, {}),
            (f"Celery task + 1 retry(countdown={RETRY_COUNTDOWN_S})", {}, retry),
        )
        broker = redis.Redis.from_url(self.stack.broker_url)
        for label, overrides, kwargs in variants:
            self.stack.stop("worker", grace_s=5)
            self.stack.start_worker(overrides, beat=False)
            spec = {"env": self._env(), "kwargs": kwargs}
            sends = lambda n, spec=spec: self.loop(  # noqa: E731
                "celery_sends", {**spec, "n": n}, lambda: self._drain(broker)
            )
            self.measure(label, "task", sends, warm=True)
        self.stack.stop("worker", grace_s=5)

    def _drain(self, broker: redis.Redis) -> None:
        """Until the queue and kombu's unacked hash are empty twice in a row (a reserved
        message is briefly in neither)."""
        deadline, empty = time.monotonic() + DRAIN_TIMEOUT_S, 0
        while empty < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            queued = self.stack.queue_length()
            self.stack.own_usage["redis:hlen"] += 1
            empty = empty + 1 if not queued and not broker.hlen("unacked") else 0

    def api(self) -> None:
        for kind in ("project", "bare"):
            self.stack.wsgi_app = f"bench.web:create('{kind}')"
            self.stack.start_api()
            http = {"port": self.stack.port, "path": "/floor/noop", "tag": "floor"}
            http |= {"duration_s": 120, "concurrency": self.connections}
            ws = {"port": self.stack.port, "path": "/floor/ws", "connections": self.connections}
            ws["deadline_s"] = 150
            post = lambda n, h=http: self._http(h, n)  # noqa: E731
            self.measure(f"POST no-op 202, {kind} app", "request", post, warm=True)
            self.measure(
                f"WebSocket open, 1 message, close, {kind} app",
                "socket",
                lambda n, ws=ws: self._child("bench.floors_load.websockets", {**ws, "n": n}),
                warm=True,
            )
            self.stack.stop("api")

    def _child(self, target: str, spec: dict[str, Any]) -> dict[str, Any]:
        out = self.stack.run_dir / "raw" / f"{target.rpartition('.')[2]}-{time.time_ns()}.json"
        return loadgen.Child(target, (spec,), out).start().result(180)

    def _http(self, spec: dict[str, Any], n: int) -> dict[str, Any]:
        result = self._child("bench.loadgen.closed_loop", {**spec, "count": n})
        if "error" in result:
            return result
        return {"n": n, "completed": sum(r[2] == 202 for r in result["records"])}

    def pg(self) -> None:
        libpq = make_url(self.stack.database_url).set(drivername="postgresql")
        spec = {"env": self._env(), "database_url": self.stack.database_url}
        spec["libpq_url"] = libpq.render_as_string(hide_password=False)
        for driver in ("psycopg", "sqlalchemy"):
            for statement, label in (
                ("insert", "INSERT order row + COMMIT"),
                ("update", "UPDATE … RETURNING, autocommit"),
            ):
                run = {**spec, "driver": driver, "statement": statement}
                load = lambda n, run=run: self.loop("pg_statements", {**run, "n": n})  # noqa: E731
                self.measure(f"{label}, {driver}", "statement", load)

    def redis(self) -> None:
        spec = {"env": self._env(), "channel": PUBLISH_CHANNEL}
        # PUBLISH's one subscriber, counting on a thread of this process what arrives.
        received: Counter[str] = Counter()
        pubsub = redis.Redis.from_url(self.stack.redis_url).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(**{PUBLISH_CHANNEL: lambda _message: received.update(["n"])})
        thread = pubsub.run_in_thread(sleep_time=0.2, daemon=True)

        def arrived(n: int) -> None:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while received["n"] < n and time.monotonic() < deadline:
                time.sleep(0.05)
            received.clear()

        def calls(command: str) -> Callable[[int], dict[str, Any]]:
            def load(n: int) -> dict[str, Any]:
                n *= REDIS_CALLS_FACTOR
                settle = (lambda: arrived(n)) if command == "publish" else None
                return self.loop("redis_calls", {**spec, "command": command, "n": n}, settle)

            return load

        try:
            self.measure("EVALSHA (script: one SET)", "call", calls("evalsha"))
            self.measure("PUBLISH, 1 subscriber", "call", calls("publish"))
        finally:
            thread.stop()
            pubsub.close()

    def rpc(self) -> None:
        self.stack.start_localnet(ZERO_LATENCY)
        spec = {"url": self.stack.localnet_url}
        self.measure(
            "getSignatureStatuses (1 signature), chain client → localnet",
            "call",
            lambda n: self.loop("rpc_calls", {**spec, "n": n}),
        )
        self.stack.stop("localnet")

    def _env(self) -> dict[str, str]:
        env = self.stack.env()
        return {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    selected = args.only.split(",") if args.only else list(FLOORS)
    if unknown := set(selected) - set(FLOORS):
        raise SystemExit(f"unknown floors: {', '.join(sorted(unknown))}")
    load_at_start, about, failed = [round(x, 2) for x in os.getloadavg()], {}, False
    with session(args.out) as (stack, monitor):
        floors = Floors(stack, monitor, args)
        try:
            stack.start_servers()
            about = describe_machine(stack.db, stack.redis_url)
            monitor.start()
            for name in (floor for floor in FLOORS if floor in selected):
                log.info("floor %s", name)
                getattr(floors, name)()
        except (KeyboardInterrupt, LaunchError, RuntimeError) as error:
            log.error("stopped: %r; writing what was measured", error)
            failed = True
    text = report(floors.rows, stack, about, args, load_at_start)
    print(text)
    (stack.run_dir / "floors.md").write_text(text + "\n")
    (stack.run_dir / "floors.json").write_text(json.dumps(floors.rows, indent=1))
    log.info("wrote %s", stack.run_dir / "floors.md")
    return 1 if failed else 0


def per_operation(
    before: dict[str, Any], after: dict[str, Any], done: int, client: dict[str, Any]
) -> dict[str, Any]:
    """CPU ms per operation of each server group and the client, Redis commands per operation."""
    seconds = after["cpu"]["t"] - before["cpu"]["t"]
    cpu0, cpu1 = before["cpu"]["cpu_s"], after["cpu"]["cpu_s"]
    ms = {g: round((cpu1.get(g, 0) - cpu0.get(g, 0)) * 1000 / done, 4) for g in SERVER_GROUPS}
    redis_cost = cost(before, after, after, done).get("redis", {})
    client_ms = client.get("client_cpu_s")
    return {
        "n": done,
        "window_s": round(seconds, 2),
        "ops_per_s": round(done / (client.get("wall_s") or seconds), 1),
        "client_ms": None if client_ms is None else round(client_ms * 1000 / done, 4),
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


def report(
    rows: list[dict[str, Any]], stack: Stack, about: dict[str, Any], args: Any, load: list[float]
) -> str:
    """The heading (plan, machine, versions, load) and the table."""
    settings = child_settings(stack.env())
    names = ("postgresql", "redis_server", "python", "celery", "gunicorn", "sqlalchemy")
    packages = about.get("packages", {})
    versions = ", ".join(f"{n} {about.get(n) or packages.get(n)}" for n in names)
    for row in rows:
        row["lowest"] = lowest(row["repeats"])
    return (
        f"# Floors: n = {args.n} per repeat, {args.repeat} repeats (lowest shown), "
        f"{args.connections} connections\n\nCPU ms per operation (user + system, each "
        f"process's own counters); worker pool {settings.worker_pool} "
        f"×{settings.worker_concurrency}; servers: {stack.server_kind}; load average at start "
        f"{load}, at end {[round(x, 2) for x in os.getloadavg()]}; {about.get('cpu_model')}, "
        f"{about.get('logical_cores')} cores; {versions}. 'servers ms' adds every server group "
        "(API, worker, all of PostgreSQL, Redis, localnet), not the client; its spread is "
        "max/min − 1 over the repeats.\n\n" + floors_table(rows, SERVER_GROUPS)
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    add = parser.add_argument
    add("--n", type=int, default=2000, help="operations per repeat")
    add("--repeat", type=int, default=2, help="repeats of each floor")
    add("--connections", type=int, default=50, help="HTTP / WebSocket clients")
    add("--only", help=f"comma-separated floors, of: {','.join(FLOORS)}")
    add("--out", default=str(Path(__file__).parent / "results"))
    return parser


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
