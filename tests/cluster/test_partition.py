"""Seven hosts on one machine (docs/operating.md): a worker host cut off mid-flight loses
nothing and executes nothing twice.

Hosts, each a network namespace (tests.support.cluster): `servers` (PostgreSQL, Redis as the
application store and broker, the localnet), `api1` and `api2` (gunicorn), `worker1` and
`worker2` (Celery), `sched` (Celery beat: the reconciler and the trigger engine). Orders go in
through api1 while their WebSockets listen on api2. Once worker1 holds orders mid-flight its
link is taken down (its processes run on), the orders it held are taken over by worker2 after
their lease, and worker1 is reconnected. Then: every order terminal, none lost, at most one
landed swap per order on the localnet's ledger, every stream exactly its order's history, and
the orders' histories untouched by anything worker1 sent late (contiguous, legal, ending in
the status the row holds).

Why worker1's late writes are mostly refused before they are written: its task time limit
(10 s here) is shorter than the order lease (11 s), so a cut-off worker's task is ended by
Celery before its lease can expire and another worker take the order over; what it had sent
into the cut link (a transaction left open, an UPDATE in a socket buffer) is rolled back by
PostgreSQL or refused by the compare-and-set on the lease. The test counts what it can see of
each (`_refused_writes`) and prints it with the timings; the counts vary from run to run with
where the cut falls, so the assertions are on the outcome, not on them.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support import cluster as netns
from tests.support.invariants import TERMINAL, check_invariants
from tests.support.stack import FAULT_TIMINGS, LOCALNET_FAULT_TIMINGS, UNLIMITED, Localnet, Stack
from tests.support.watchers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ORDERS = int(os.environ.get("CLUSTER_ORDERS", "40"))
# Landings take 2-3 s (the localnet's default latency), so orders are mid-flight long enough
# to be caught by the cut; blockhashes live 15 slots (6 s), shorter than the lease, so a
# take-over finds the cut worker's last transaction landed or expired, never in between.
LOCALNET = {**LOCALNET_FAULT_TIMINGS, "DEX_SWAP_LATENCY_MS": "2000-3000"}
API_PORT, LOCALNET_PORT = netns.API_PORT, netns.LOCALNET_PORT
# A worker's executor id is `host:pid:nonce`; a refused write of the cut worker shows in its
# log as a lost lease or a claim that found the order taken.
REFUSED = r"lease lost|lost the lease|not runnable by \S+:{pid}:"


@pytest.fixture
def cluster(tmp_path: Path):
    reason = netns.namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"make test-cluster needs Linux network namespaces: {reason}")
    netns.sweep_orphans()
    built = netns.Cluster(tmp_path)
    try:
        yield built
    except BaseException:
        print(built.logs())
        raise
    finally:
        built.close()


class ClusterStack(Stack):
    """The fault harness's stack (clients, watchers, ledger, invariants) over the cluster:
    orders go to api1, WebSockets to api2."""

    api1: str = ""
    api2: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.api1}:{API_PORT}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.api2}:{API_PORT}"

    def close(self) -> None:  # the cluster stops the processes
        if self._engine is not None:
            self._engine.dispose()


def _start_stack(c: netns.Cluster) -> tuple[ClusterStack, dict[str, netns.Host]]:
    settings = {
        **FAULT_TIMINGS,
        **UNLIMITED,
        "WEB_CONCURRENCY": "1",
        "API_WORKER_CLASS": "gevent",
        "WORKER_POOL": "gevent",
        "WORKER_CONCURRENCY": "50",
    }
    deployment = netns.deploy(c, apis=2, workers=2, settings=settings, localnet=LOCALNET)
    stack = ClusterStack(
        name="cluster",
        settings=deployment.settings,
        log_dir=c.work_dir,
        port=API_PORT,
        localnet=Localnet(
            deployment.localnet_url, LOCALNET_PORT, c.work_dir, deployment.localnet_process
        ),
    )
    stack.api1, stack.api2 = deployment.hosts["api1"].ip, deployment.hosts["api2"].ip
    return stack, deployment.hosts


def _held_by(stack: Stack, pid: int) -> list[str]:
    """Orders mid-flight whose lease the worker process `pid` holds."""
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id FROM orders WHERE status IN ('routing', 'building', 'submitted') "
                "AND lease_owner LIKE :owner"
            ),
            {"owner": f"%:{pid}:%"},
        ).scalars()
        return [str(r) for r in rows]


def _all_terminal(stack: Stack) -> bool:
    with stack.engine.connect() as conn:
        statuses = conn.execute(
            text("SELECT status FROM orders WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(i) for i in stack.accepted]},
        ).scalars()
        return all(status in TERMINAL for status in statuses)


def _refused_writes(
    c: netns.Cluster, hosts: dict[str, netns.Host], w1_pid: int, log_at_cut: int, held: list[str]
) -> dict[str, int]:
    """What the cut worker tried to write and was refused, by who refused it:
    - `rolled_back`: its transactions left open at the cut, ended by PostgreSQL (the
      idle-in-transaction timeout, or the connection's end at the heal): nothing committed;
    - `cas`: its claims and transitions refused by the lease / compare-and-set rules (its log);
    - `duplicates`: deliveries of its orders' tasks that reached worker2 too (the broker
      redelivering what the cut worker never acknowledged), refused by the claim."""
    postgres = c.log(hosts["servers"], "postgres")
    rolled_back = sum(
        1
        for line in postgres.splitlines()
        if f" {hosts['worker1'].ip} " in line
        and ("idle-in-transaction timeout" in line or "with an open transaction" in line)
    )
    pattern = re.compile(REFUSED.format(pid=w1_pid))
    late_log = c.log(hosts["worker1"], "worker")[log_at_cut:]
    cas = sum(1 for line in late_log.splitlines() if pattern.search(line))
    duplicates = sum(
        1
        for line in c.log(hosts["worker2"], "worker").splitlines()
        if "not runnable by" in line and any(order_id in line for order_id in held)
    )
    return {"rolled_back": rolled_back, "cas": cas, "duplicates": duplicates}


def test_a_worker_host_cut_off_mid_flight_loses_nothing_and_executes_nothing_twice(cluster):
    stack, hosts = _start_stack(cluster)
    worker1 = hosts["worker1"]
    w1_pid = worker1.processes["worker"].pid

    for n in range(ORDERS):
        order_id = stack.submit(key=f"cluster-{n}", clientOrderId=f"cluster-{n}", amount="0.1")
        stack.watch(order_id, timeout_s=240)
    # Mid-flight on worker1: it holds leases of orders it has routed and is sending.
    wait_until(lambda: len(_held_by(stack, w1_pid)) >= 3, 60, "worker1 to hold orders", 0.05)
    held_at_cut = _held_by(stack, w1_pid)
    cluster.cut(worker1)
    cut_at = time.monotonic()
    log_at_cut = len(cluster.log(worker1, "worker"))

    # worker2 takes the cut worker's orders over once their leases expire (the reconciler
    # re-queues them), without the cut worker: PostgreSQL ends the sessions it left idle in a
    # transaction (WORKER_SESSION_TIMEOUTS_MS), so no row stays locked by a host that is gone.
    lease_s = int(stack.settings["ORDER_LEASE_S"])
    during = netns.wait_seconds(lambda: _all_terminal(stack), 4 * lease_s)
    cluster.heal(worker1)
    healed_at = time.monotonic()
    after_heal = netns.wait_seconds(lambda: _all_terminal(stack), 120)
    assert after_heal is not None, "orders still unfinished 120 s after the heal"
    assert during is not None, (
        f"the cluster did not finish the cut worker's orders without it ({4 * lease_s} s)"
    )

    # The reconnected worker settles what it was doing when it was cut off; then it is idle.
    from celery import Celery

    from order_engine.config import Settings
    from order_engine.tasking.app import celery_config

    control = Celery("cluster-control", set_as_current=False)
    control.config_from_object(celery_config(Settings.from_env(stack.settings)))

    def worker1_idle() -> bool:
        replies = control.control.inspect(destination=["worker1@" + os.uname().nodename]).active()
        return bool(replies) and all(not tasks for tasks in replies.values())

    wait_until(worker1_idle, 90, "worker1 to reconnect and finish its tasks", every_s=1)
    refused = _refused_writes(cluster, hosts, w1_pid, log_at_cut, held_at_cut)

    # And the reconnected worker takes new work again.
    extra = [stack.submit(amount="0.1") for _ in range(4)]
    stack.wait_terminal(extra, 60)

    report = check_invariants(stack, terminal_within_s=60)
    print(
        f"\ncluster: {report.orders} orders {report.by_status}, {report.landed} landed, "
        f"{report.watchers} WebSockets on api2 exact; worker1 held {len(held_at_cut)} "
        f"mid-flight at the cut; all terminal "
        + (f"{during:.1f} s after the cut (before the heal)" if during is not None else "")
        + f"; {after_heal:.1f} s from the heal to the last terminal order "
        f"(heal {healed_at - cut_at:.1f} s after the cut); refused writes: {refused}"
    )
    assert held_at_cut, "worker1 held nothing when it was cut off: the scenario did not happen"
    assert report.watchers == ORDERS
