"""`make bench-cluster`: throughput and CPU per order with 1, 2, … worker hosts (root, Linux
network namespaces). A measurement, not a test: it runs only under `make bench-cluster`
(BENCH_CLUSTER=1), and it lives beside the cluster test because it deploys that test's cluster
(tests.support.cluster), which the benchmark may not import.

For each worker-host count M it deploys a servers host (PostgreSQL, Redis, the localnet at its
default latencies), N API hosts, M worker hosts and one scheduler host, each started as
`make run` starts it; offers an open-loop load of market orders to the API hosts from the root
namespace; waits until every accepted order is terminal; and reports:

- orders/s: orders / (last terminal event − first acceptance), from the database (also to the
  99th percentile's terminal event, and the API hosts' acceptance rate);
- CPU ms per order of each process group (API hosts, worker hosts, scheduler, PostgreSQL, Redis,
  localnet), from every process's own counters in each namespace before and after the load, so
  the scaling on real hosts can be projected: a worker host with C cores carries about
  C / (worker CPU per order) orders/s.

On one 2-core machine all hosts share the same two cores, so a second worker host adds
throughput only while the cores are not saturated; the CPU per order is the figure to carry.
`BENCH_ARGS="--workers 1 2 3 --rate 40 --seconds 15"` changes the runs; the results are printed
and written to bench/results/cluster-<time>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.support import cluster as netns
from tests.support.clients import auth

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("BENCH_CLUSTER") != "1", reason="a measurement: `make bench-cluster`"
    ),
]

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
CONNECTIONS = 32  # per API host
# The load's own account must not be what is limited (an in-flight cap counted, as before).
UNLIMITED = {
    "RATE_LIMIT_PER_S": "100000",
    "RATE_LIMIT_BURST": "100000",
    "MAX_ORDERS_IN_FLIGHT": "100000",
    "MAX_WEBSOCKETS": "100000",
}
SUMMARY_SQL = """
WITH done AS (
    SELECT o.status, o.created_at, e.at, extract(epoch FROM e.at - o.created_at) AS took
      FROM orders o JOIN order_events e ON e.order_id = o.id AND e.seq = o.last_seq
)
SELECT count(*) AS orders, count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
       min(created_at) AS first, max(created_at) AS last_accepted, max(at) AS last,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY at) AS last_99,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY took) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY took) AS p99,
       max(took) AS slowest
  FROM done
"""


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench-cluster BENCH_ARGS=...")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--rate", type=float, default=40.0, help="offered orders/s in all")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(shlex.split(os.environ.get("BENCH_ARGS", "")))


@pytest.mark.timeout(3600)
def test_throughput_with_one_and_more_worker_hosts(tmp_path: Path) -> None:
    reason = netns.namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"make bench-cluster needs Linux network namespaces: {reason}")
    netns.sweep_orphans()
    args = _args()
    runs = []
    for workers in args.workers:
        work_dir = tmp_path / f"workers-{workers}"
        work_dir.mkdir()
        result = _measure(workers, args.apis, args.rate, args.seconds, work_dir)
        print(json.dumps(result), flush=True)
        runs.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(runs, indent=2))
    print(f"written to {path}")
    assert all(run["unfinished"] == 0 for run in runs), runs


def _measure(workers: int, apis: int, rate: float, seconds: float, work_dir: Path) -> dict:
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
        before = _cpu_by_group(deployment)
        hosts = deployment.hosts_named("api")
        with ThreadPoolExecutor(len(hosts)) as pool:
            loads = [pool.submit(_open_loop, h.ip, rate / apis, seconds) for h in hosts]
            records = [record for load in loads for record in load.result()]
        deadline = time.monotonic() + 300
        while _unfinished(engine) and time.monotonic() < deadline:
            time.sleep(0.5)
        after = _cpu_by_group(deployment)
        with engine.connect() as conn:
            row = conn.execute(text(SUMMARY_SQL)).one()
        cpu = {group: after.get(group, 0.0) - before.get(group, 0.0) for group in after}
        return {
            "worker_hosts": workers,
            "api_hosts": apis,
            "offered_per_s": rate,
            "duration_s": seconds,
            "accepted": sum(1 for r in records if r[1] == 202),
            "unfinished": _unfinished(engine),
            **_rates(row, sorted(r[0] for r in records if r[1] == 202)),
            "cpu_ms_per_order": {
                group: round(s * 1000 / row.orders, 2) for group, s in sorted(cpu.items())
            },
        }
    finally:
        if engine is not None:
            engine.dispose()
        c.close()


def _rates(row: Any, intake_ms: list[float]) -> dict[str, Any]:
    """Completed orders over the span from the first acceptance to the last terminal event
    (and to the 99th percentile's, which one straggler does not move), the rate at which the
    API hosts accepted them, and the latencies."""
    elapsed = (row.last - row.first).total_seconds()
    elapsed_99 = (row.last_99 - row.first).total_seconds()
    accepting = (row.last_accepted - row.first).total_seconds()
    return {
        "orders": row.orders,
        "confirmed": row.confirmed,
        "orders_per_s": round(row.orders / elapsed, 2) if elapsed > 0 else None,
        "orders_per_s_99": round(0.99 * row.orders / elapsed_99, 2) if elapsed_99 > 0 else None,
        "accepted_per_s": round(row.orders / accepting, 2) if accepting > 0 else None,
        "intake_p50_p99_ms": [
            round(intake_ms[len(intake_ms) // 2], 1),
            round(intake_ms[int(len(intake_ms) * 0.99)], 1),
        ]
        if intake_ms
        else None,
        "p50_accept_to_terminal_s": round(float(row.p50), 2),
        "p99_accept_to_terminal_s": round(float(row.p99), 2),
        "slowest_accept_to_terminal_s": round(float(row.slowest), 2),
    }


def _open_loop(host: str, rate: float, seconds: float) -> list[tuple[float, int]]:
    """Order i is due at start + i/rate whatever happened to the earlier ones, sent by one of
    CONNECTIONS keep-alive connections; its latency runs from its due time, so a slow API
    shows as latency rather than as a lower offered rate. [(latency ms, HTTP status), …]"""
    body = json.dumps({"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.01"})
    headers = {**auth(), "Content-Type": "application/json"}
    local = threading.local()

    def send(due: float) -> tuple[float, int]:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host, netns.API_PORT, timeout=30)
        try:
            local.conn.request("POST", "/api/orders/execute", body, headers)
            response = local.conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            local.conn.close()
            del local.conn
            status = 0
        return (time.monotonic() - due) * 1000, status

    start = time.monotonic() + 0.2
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        sent = []
        for index in range(int(rate * seconds)):
            due = start + index / rate
            time.sleep(max(0.0, due - time.monotonic()))
            sent.append(pool.submit(send, due))
        return [future.result() for future in sent]


def _cpu_by_group(deployment: netns.Deployment) -> dict[str, float]:
    """CPU seconds (user + system, with reaped children) of every process in each host."""
    seconds: dict[str, float] = defaultdict(float)
    for role, host in deployment.hosts.items():
        for pid in netns._ip("netns", "pids", host.ns, check=False).stdout.split():
            try:
                process = psutil.Process(int(pid))
                times, name = process.cpu_times(), process.name()
                cmdline = " ".join(process.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            group = role.rstrip("0123456789")
            if role == "servers":
                group = next(
                    (g for g in ("postgres", "redis") if g in name),
                    "localnet" if "localnet" in cmdline else "servers-other",
                )
            seconds[group] += (
                times.user + times.system + times.children_user + times.children_system
            )
    return dict(seconds)


def _unfinished(engine: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM orders "
                "WHERE status NOT IN ('confirmed', 'failed', 'cancelled')"
            )
        ).scalar_one()
