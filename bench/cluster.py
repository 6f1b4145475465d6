"""Throughput with 1, 2, … worker hosts: `make bench-cluster` (root, Linux network namespaces).

For each worker-host count M, builds the cluster of `make test-cluster` (tests/support/cluster.py:
a servers host with PostgreSQL, Redis and the localnet at its default latencies, N API hosts, M
worker hosts, one scheduler host, each started as `make run` starts it), offers an open-loop
load of market orders to the API hosts from this (root) namespace with bench.loadgen, waits
until every accepted order is terminal, and reports:

- orders/s: orders / (last terminal event − first acceptance), from the database (also to the
  99th percentile's terminal event, and the API hosts' acceptance rate);
- CPU per order of each process group (API hosts, worker hosts, scheduler, PostgreSQL, Redis,
  localnet), from the processes' own counters (every process in each namespace, read before
  and after the load), so the scaling on real hosts can be projected: a worker host with C
  cores can carry about C / (worker CPU per order) orders/s.

On one 2-core machine all hosts share the same two cores, so a second worker host adds
throughput only while the cores are not saturated; the CPU per order is the figure to carry.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text

from bench.loadgen import ENGINE_PATH
from bench.procs import Child
from tests.support import cluster as netns
from tests.support.clients import TEST_API_KEY

log = logging.getLogger("bench.cluster")

UNLIMITED = {
    "RATE_LIMIT_PER_S": "100000",
    "RATE_LIMIT_BURST": "100000",
    "MAX_ORDERS_IN_FLIGHT": "100000",
    "MAX_WAITING_ORDERS": "100000",
    "MAX_WEBSOCKETS": "100000",
}


def cpu_by_group(c: netns.Cluster, deployment: netns.Deployment) -> dict[str, float]:
    """CPU seconds (user + system, with reaped children) of every process in each host."""
    seconds: dict[str, float] = defaultdict(float)
    for role, host in deployment.hosts.items():
        pids = netns._ip("netns", "pids", host.ns, check=False).stdout.split()
        for pid in pids:
            try:
                process = psutil.Process(int(pid))
                times = process.cpu_times()
                name = process.name()
                cmdline = " ".join(process.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if role == "servers":
                group = (
                    "postgres"
                    if "postgres" in name
                    else "redis"
                    if "redis" in name
                    else "localnet"
                    if "localnet" in cmdline
                    else "servers-other"
                )
            else:
                group = role.rstrip("0123456789")
            seconds[group] += (
                times.user + times.system + times.children_user + times.children_system
            )
    return dict(seconds)


def measure(workers: int, apis: int, rate: float, duration_s: float, work_dir: Path) -> dict:
    c = netns.Cluster(work_dir)
    engine = None
    try:
        deployment = netns.deploy(
            c,
            apis=apis,
            workers=workers,
            settings={**UNLIMITED, "LOG_LEVEL": "WARNING"},
            localnet={"DEX_SEED": "7"},  # the localnet's default latencies: landing in 2-3 s
        )
        engine = create_engine(deployment.settings["DATABASE_URL"])
        before = cpu_by_group(c, deployment)
        os.environ["BENCH_API_KEY"] = TEST_API_KEY  # the spawned load generators send it
        per_api = rate / apis
        children = [
            Child(
                "bench.loadgen.open_loop",
                (
                    {
                        "host": host.ip,
                        "port": netns.API_PORT,
                        "connections": 32,
                        "rate": per_api,
                        "duration_s": duration_s,
                        "path": ENGINE_PATH,
                        "tag": f"m{workers}-{host.name}",
                    },
                ),
                work_dir / f"load-{host.name}.json",
            ).start()
            for host in deployment.hosts_named("api")
        ]
        results = [child.result(duration_s + 60) for child in children]
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise RuntimeError("\n".join(errors))
        records = [record for r in results for record in r["records"]]
        accepted = [record[3] for record in records if record[2] == 202]
        intake_ms = sorted(record[1] for record in records if record[2] == 202)

        deadline = time.monotonic() + 300
        while unfinished_count(engine) and time.monotonic() < deadline:
            time.sleep(0.5)
        after = cpu_by_group(c, deployment)
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "WITH done AS (SELECT o.status, o.created_at, e.at, "
                    "extract(epoch FROM e.at - o.created_at) AS took FROM orders o "
                    "JOIN order_events e ON e.order_id = o.id AND e.seq = o.last_seq) "
                    "SELECT count(*) AS orders, "
                    "count(*) FILTER (WHERE status = 'confirmed') AS confirmed, "
                    "min(created_at) AS first, max(created_at) AS last_accepted, "
                    "max(at) AS last, "
                    "percentile_disc(0.99) WITHIN GROUP (ORDER BY at) AS last_99, "
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY took) AS p50, "
                    "percentile_cont(0.99) WITHIN GROUP (ORDER BY took) AS p99, "
                    "max(took) AS slowest FROM done"
                )
            ).one()
        elapsed = (row.last - row.first).total_seconds()
        elapsed_99 = (row.last_99 - row.first).total_seconds()
        accepting = (row.last_accepted - row.first).total_seconds()
        cpu = {group: after.get(group, 0.0) - before.get(group, 0.0) for group in after}
        orders = row.orders
        return {
            "worker_hosts": workers,
            "api_hosts": apis,
            "offered_per_s": rate,
            "duration_s": duration_s,
            "accepted": len(accepted),
            "orders": orders,
            "confirmed": row.confirmed,
            "unfinished": unfinished_count(engine),
            # Completed orders over the span from the first acceptance to the last terminal
            # event (and to the 99th percentile's, which one straggler does not move), and
            # the rate at which the API hosts accepted them.
            "orders_per_s": round(orders / elapsed, 2) if elapsed > 0 else None,
            "orders_per_s_99": round(0.99 * orders / elapsed_99, 2) if elapsed_99 > 0 else None,
            "accepted_per_s": round(orders / accepting, 2) if accepting > 0 else None,
            "intake_p50_p99_ms": [
                round(intake_ms[len(intake_ms) // 2], 1),
                round(intake_ms[int(len(intake_ms) * 0.99)], 1),
            ]
            if intake_ms
            else None,
            "p50_accept_to_terminal_s": round(float(row.p50), 2),
            "p99_accept_to_terminal_s": round(float(row.p99), 2),
            "slowest_accept_to_terminal_s": round(float(row.slowest), 2),
            "cpu_ms_per_order": {
                group: round(seconds * 1000 / orders, 2) for group, seconds in sorted(cpu.items())
            },
        }
    finally:
        if engine is not None:
            engine.dispose()
        c.close()


def unfinished_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM orders "
                "WHERE status NOT IN ('confirmed', 'failed', 'cancelled')"
            )
        ).scalar_one()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--rate", type=float, default=40.0, help="offered orders/s in all")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    reason = netns.namespaces_unavailable()
    if reason is not None:
        print(f"bench-cluster SKIPPED: {reason}")
        return 0
    netns.sweep_orphans()
    runs: list[dict[str, Any]] = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix=f"bench-cluster-{workers}-") as work:
            os.chmod(work, 0o755)  # PostgreSQL runs as another user below it
            result = measure(workers, args.apis, args.rate, args.seconds, Path(work))
        print(json.dumps(result), flush=True)
        runs.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(runs, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
