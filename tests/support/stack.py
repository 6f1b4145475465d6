"""The stack under test: API (gunicorn), Celery worker(s), beat and the localnet as child
processes of a `Launcher` (order_engine.ops.launch: each started with the command line `make run`
gives it), and what only the tests do with them.

`Stack` starts, kills and restarts those processes, reads the stack's database and chain, and
submits and watches orders. Two kinds of stack use it: the session's `live_stack`
(tests/conftest.py: API and worker on the session's servers and localnet) and the fault suite's
`make_stack` (tests/integration/faults: private Redis, optionally private PostgreSQL, its own
localnet, beat, the timings below). Every stack has its own localnet process (the simulated
validator, `order_engine.localnet`) or shares the session's: its settings (`LOCALNET_SETTINGS`:
landing latency, blockhash validity, random failure rates) go to that process, the rest to the
engine's processes. Chain faults are planned per memo on the localnet (`Stack.plant_faults`);
faults of the sender process itself (dying or hanging inside `send_transaction`) exist only in
the test worker app `tests.support.crashing_worker` (`make_stack(sender_faults=True)`,
`Stack.plant_sender_faults`).

The processes are not run under `order_engine.ops.supervisor`: it restarts a process that dies,
and the fault tests kill processes and decide themselves when one comes back. Processes started
here are owned by the test or fixture that started them and always stopped.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from order_engine.ops.launch import (
    Launcher,
    child_settings,
    free_port,
    rpc,
    scheduler_argv,
    stop_process,
    worker_argv,
)
from order_engine.ops.programs import CELERY_APP
from tests.support.clients import HttpResponse, order_body, request
from tests.support.invariants import TERMINAL
from tests.support.servers import RedisServer
from tests.support.watchers import Watcher, wait_until

# The suite's own traffic is not what the per-account limits are about; the tests of the limits
# set their own. Nor is the limit on failed authentications: every test client is 127.0.0.1,
# and the tests of bad keys and tickets add up within its window.
UNLIMITED = {
    "RATE_LIMIT_PER_S": "100000",
    "RATE_LIMIT_BURST": "100000",
    "MAX_ORDERS_IN_FLIGHT": "0",
    "MAX_WAITING_ORDERS": "0",
    "MAX_WEBSOCKETS": "100000",
    "AUTH_FAILURE_LIMIT": "0",
}

# The localnet's own settings (docs/localnet.md): fast landings, no random failures, so tests decide
# every fault themselves (through the localnet's admin methods).
LOCALNET_TIMINGS = {
    "DEX_SEED": "7",
    "DEX_RPC_LATENCY_MS": "0",
    "DEX_SWAP_LATENCY_MS": "300-400",
    "DEX_TRANSIENT_FAILURE_RATE": "0",
    "DEX_EXPIRY_RATE": "0",
    "DEX_BLOCKHASH_VALIDITY_SLOTS": "151",
}

# The session's live stack: production's API worker class and worker pool (gevent), one API
# worker; TEST_API_WORKER_CLASS / TEST_WORKER_POOL / TEST_WORKER_CONCURRENCY try others.
LIVE_LATENCIES = {
    "WEB_CONCURRENCY": "1",
    "API_WORKER_CLASS": os.environ.get("TEST_API_WORKER_CLASS", "gevent"),
    "API_WORKER_CONNECTIONS": "1000",
    "WORKER_POOL": os.environ.get("TEST_WORKER_POOL", "gevent"),
    "WORKER_CONCURRENCY": os.environ.get("TEST_WORKER_CONCURRENCY", "100"),
}

SLOT_S = 0.4  # the localnet's slot (LOCALNET_SLOT_MS default)

# Test timings (docs/reliability.md, "Timings"): fast landings, short blockhash lifetime, lease and
# visibility timeout, a reconciler every second. `Settings.checked` demands TASK_TIME_LIMIT_S >
# CONFIRM_TIMEOUT_S + 4 × RPC_TIMEOUT_S, ORDER_LEASE_S > TASK_TIME_LIMIT_S and ORDER_LEASE_S +
# ORDER_RETRY_BACKOFF_MAX_S < BROKER_VISIBILITY_TIMEOUT_S. The blockhash lifetime (15 slots,
# 6 s) is shorter than the lease on purpose: an executor that takes over a dead one's order
# finds that order's last transaction either landed or expired, never in between.
FAULT_TIMINGS = {
    "DEX_SEED": "7",
    "ORDER_MAX_ATTEMPTS": "3",
    "ORDER_MAX_DELIVERIES": "4",
    "ORDER_RETRY_BACKOFF_S": "1",
    "ORDER_RETRY_BACKOFF_MAX_S": "2",
    "CONFIRM_TIMEOUT_S": "5",
    "RPC_TIMEOUT_S": "1",
    "TASK_TIME_LIMIT_S": "10",
    "ORDER_LEASE_S": "11",
    "BROKER_VISIBILITY_TIMEOUT_S": "20",
    "RECONCILE_INTERVAL_S": "1",
    "STALE_PENDING_AFTER_S": "2",
    "LOG_LEVEL": "INFO",
    "LOG_CONTROL_TASKS": "true",  # the tests read the scheduler's and worker's lines
    "DB_POOL_SIZE": "5",
    **UNLIMITED,
}
# The localnet's own settings (its process reads them, the engine never does): a `make_stack`
# override of one of these names goes to the stack's localnet.
LOCALNET_FAULT_TIMINGS = {
    "DEX_SEED": "7",
    "DEX_RPC_LATENCY_MS": "0",
    "DEX_SWAP_LATENCY_MS": "300-400",
    "DEX_TRANSIENT_FAILURE_RATE": "0",
    "DEX_EXPIRY_RATE": "0",
    "DEX_BLOCKHASH_VALIDITY_SLOTS": "15",
}
LOCALNET_SETTINGS = frozenset({*LOCALNET_FAULT_TIMINGS, "LOCALNET_SLOT_MS"})
WORKER_APP = CELERY_APP
SENDER_FAULTS_APP = "tests.support.crashing_worker"


# -- the localnet ------------------------------------------------------------------------------


@dataclass
class Localnet:
    """A localnet process (the simulated validator) started by a test fixture."""

    url: str
    port: int
    state_dir: Path
    process: subprocess.Popen[bytes]

    def call(self, method: str, *params: object) -> object:
        return rpc(self.url, method, list(params))


def start_localnet(state_dir: Path, extra_env: dict[str, str] | None = None) -> Localnet:
    """`order-engine localnet serve` (as `make run` starts it) on a free port."""
    port = free_port()
    env = {
        **os.environ,
        **LOCALNET_TIMINGS,
        **(extra_env or {}),
        "LOCALNET_STATE_DIR": str(state_dir),
    }
    launcher = Launcher(state_dir)
    try:
        url = launcher.start_localnet(env, port)
    except BaseException:
        launcher.close(5)
        raise
    return Localnet(url, port, state_dir, launcher.processes["localnet"])


# -- the stack ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Stack(Launcher):
    """API (gunicorn), Celery worker(s) and beat as child processes (a `Launcher`), against
    given servers and a localnet, with the settings `settings` over the test's environment."""

    name: str
    settings: dict[str, str]
    port: int
    localnet: Localnet
    # A private Redis the test may stop (None: the stack uses the session's Redis).
    redis_server: RedisServer | None = None
    owns_localnet: bool = True
    worker_app: str = WORKER_APP
    accepted: list[str] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    idempotency_keys: set[str] = field(default_factory=set)
    _engine: Engine | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.settings["DATABASE_URL"], pool_pre_ping=True)
        return self._engine

    # processes

    def env(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.settings, **(overrides or {})}

    def start_api(
        self, *, workers: int | None = None, graceful_timeout_s: int = 2, wait: bool = True
    ) -> None:
        """gunicorn as `make run` starts it; `workers` overrides WEB_CONCURRENCY. gunicorn_conf
        waits 15 s for open requests on SIGTERM; the fault tests stop and restart APIs many
        times and want each stop to be quick (`graceful_timeout_s`)."""
        env = self.env({} if workers is None else {"WEB_CONCURRENCY": str(workers)})
        graceful = ["--graceful-timeout", str(graceful_timeout_s)]
        super().start_api(env, self.port, extra=graceful, wait=wait)

    def wait_api(self, port: int | None = None, timeout_s: float = 60) -> None:
        super().wait_api(port or self.port, timeout_s)

    def start_worker(
        self,
        name: str = "worker",
        *,
        pool: str | None = None,
        concurrency: int | None = None,
        queues: str | None = None,
        wait: bool = True,
    ) -> Any:
        """A Celery worker as `make run` starts it, named `<name>-<port>@%h`, at INFO (tests
        wait for its " ready." line); `pool` and `concurrency` override the stack's WORKER_POOL
        and WORKER_CONCURRENCY, `queues` the queues it consumes."""
        overrides = {"WORKER_POOL": pool, "WORKER_CONCURRENCY": concurrency}
        env = self.env({k: str(v) for k, v in overrides.items() if v is not None})
        hostname = f"{name}-{self.port}@%h"
        argv = worker_argv(
            child_settings(env), hostname, app=self.worker_app, queues=queues, loglevel="INFO"
        )
        process = self.start(name, argv, env)
        if wait:
            self.wait_log(name, " ready.")
        return process

    def start_beat(
        self, name: str = "beat", *, wait: bool = True, overrides: dict[str, str] | None = None
    ) -> None:
        """Celery beat (the scheduler) as `make run` starts it, at INFO (tests wait for its
        "beat: Starting" line), `overrides` added to its settings; a second one under another
        name is a second scheduler, as two hosts would run by mistake."""
        env = self.env(overrides)
        schedule = self.log_dir / f"{name}-schedule"
        self.start(name, scheduler_argv(child_settings(env), schedule, loglevel="INFO"), env)
        if wait:
            self.wait_log(name, "beat: Starting")

    def close(self, timeout_s: float = 1.5, last: tuple[str, ...] = ()) -> None:
        """Stop the watchers and every process, then the localnet if the stack owns it."""
        for watcher in self.watchers:
            watcher.drop()
        super().close(timeout_s, last)
        if self.owns_localnet:
            stop_process(self.localnet.process, 5)
        if self._engine is not None:
            self._engine.dispose()

    def logs(self, tail_chars: int = 6000) -> str:
        return "\n".join(
            f"--- {path.relative_to(self.log_dir)} ---\n"
            f"{path.read_text(errors='replace')[-tail_chars:]}"
            for path in sorted(self.log_dir.rglob("*.log"))
        )

    def wait_log_match(self, name: str, pattern: str, timeout_s: float) -> None:
        """Until the latest log of process `name` matches a regex (fail if it exits)."""
        self.wait(name, lambda: re.search(pattern, self.log(name)), repr(pattern), timeout_s)

    # clients

    def post_order(
        self, body: dict[str, Any], key: str | None = None, timeout_s: float = 30
    ) -> HttpResponse:
        headers = {"Idempotency-Key": key} if key else {}
        if key:
            self.idempotency_keys.add(key)
        response = request(
            "POST", f"{self.base_url}/api/orders/execute", body, headers, timeout_s=timeout_s
        )
        if response.status == 202 and response.body["orderId"] not in self.accepted:
            self.accepted.append(response.body["orderId"])
        return response

    def submit(self, key: str | None = None, **overrides: Any) -> str:
        response = self.post_order(order_body(**overrides), key)
        assert response.status == 202, (response.status, response.body)
        return response.body["orderId"]

    def plant_faults(self, client_order_id: str, *faults: str) -> None:
        """Plan chain faults on the localnet, consumed one per `sendTransaction` whose memo is
        `client_order_id`: rpc_unavailable, lost_response, drop, price_jump, stall."""
        self.localnet.call("localnet_planFaults", {"memo": client_order_id, "faults": list(faults)})

    # the sender's own faults (only with the test worker app, `make_stack(sender_faults=True)`)

    @property
    def sender_faults_dir(self) -> Path:
        return Path(self.settings["SENDER_FAULTS_DIR"])

    def plant_sender_faults(self, client_order_id: str, *actions: str) -> None:
        """Plan what the worker does inside `send_transaction` for this memo, one action per
        send: `crash` (os._exit(137) before the RPC) or `hold` (block until released)."""
        from tests.support.sender_faults import plan_path

        assert self.worker_app == SENDER_FAULTS_APP, "make_stack(sender_faults=True) needed"
        with open(plan_path(self.sender_faults_dir, client_order_id), "a") as plan:
            plan.write("".join(f"{action}\n" for action in actions))

    def sender_faults_left(self, client_order_id: str) -> int:
        from tests.support.sender_faults import plan_path

        path = plan_path(self.sender_faults_dir, client_order_id)
        return len(path.read_text().split()) if path.exists() else 0

    def sender_crashes(self, client_order_id: str) -> int:
        from tests.support.sender_faults import plan_path

        path = plan_path(self.sender_faults_dir, client_order_id).with_suffix(".crashed")
        return len(path.read_text().split()) if path.exists() else 0

    def release_held_sends(self) -> None:
        (self.sender_faults_dir / "release").touch()

    def watch(self, order_id: str, **options: Any) -> Watcher:
        watcher = Watcher(self.ws_url, order_id, **options)
        self.watchers.append(watcher)
        watcher.start()
        return watcher

    def broker_app(self):
        """A Celery producer configured exactly like the product's (to send tasks by hand)."""
        from celery import Celery

        from order_engine.config import Settings
        from order_engine.tasking.app import celery_config

        app = Celery("faults-producer", set_as_current=False)
        app.config_from_object(celery_config(Settings.from_env(self.settings)))
        return app

    # the database, read directly

    def order_row(self, order_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(text("SELECT * FROM orders WHERE id = :id"), {"id": order_id})
                .mappings()
                .one()
            )
        return dict(row)

    def order_count(self, *, idempotency_key: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM orders WHERE idempotency_key = :key"),
                {"key": idempotency_key},
            ).scalar_one()

    def statuses(self, order_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT status FROM order_events WHERE order_id = :id ORDER BY seq"),
                    {"id": order_id},
                ).scalars()
            )

    # the chain, read from the localnet

    def ledger(self, memo: str | None = None) -> list[dict[str, Any]]:
        """The landed transactions (status `landed`, or `failed` when a program refused) with
        this memo (all of them without one), in landing order."""
        params = {} if memo is None else {"memo": memo}
        entries = self.localnet.call("localnet_ledger", params)
        assert isinstance(entries, list), entries
        return sorted(entries, key=lambda e: (e["slot"], e.get("landedMs", 0)))

    def block_height(self) -> int:
        height = self.localnet.call("getBlockHeight")
        assert isinstance(height, int), height
        return height

    def wait_block_height_above(self, height: int) -> None:
        """Wait until the chain is past `height`: a blockhash valid through it can no longer
        land anything."""
        timeout_s = max(0, height - self.block_height() + 3) * SLOT_S + 10
        wait_until(lambda: self.block_height() > height, timeout_s, f"block height > {height}", 0.2)

    def wait_status(
        self, order_id: str, *wanted: str, timeout_s: float = 20, every_s: float = 0.02
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            row = self.order_row(order_id)
            return row if row["status"] in wanted else None

        return wait_until(reached, timeout_s, f"order {order_id} to be {wanted}", every_s=every_s)

    def wait_terminal(self, order_ids: list[str], timeout_s: float = 60) -> None:
        def all_done() -> bool:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT status FROM orders WHERE id = ANY(:ids)"),
                    {"ids": [uuid.UUID(i) for i in order_ids]},
                ).scalars()
                return all(status in TERMINAL for status in rows)

        wait_until(all_done, timeout_s, f"{len(order_ids)} order(s) to finish", every_s=0.1)

    def executor_pid(self, order_id: str) -> int:
        """The pid of the process holding the order's lease (`host:pid:nonce`)."""
        owner = self.order_row(order_id)["lease_owner"]
        assert owner, f"order {order_id} has no lease owner"
        return int(owner.split(":")[-2])

    def worker_children(self, name: str = "worker") -> list[int]:
        return [child.pid for child in psutil.Process(self.pid(name)).children()]

    def task_log_count(self, pattern: str, name: str = "worker") -> int:
        """How often a regex matches across every start of a worker's log."""
        return sum(
            len(re.findall(pattern, self.log(name, n))) for n in range(1, self.starts[name] + 1)
        )


def start_live_stack(settings: dict[str, str], localnet: Localnet, log_dir: Path) -> Stack:
    """The session's live stack: API and one worker on the session's servers and localnet,
    logging JSON as production does; the caller closes it."""
    from tests.support.brokers import purge_broker

    port = free_port()
    settings = {
        **settings,
        **LIVE_LATENCIES,
        "PORT": str(port),
        # Production's log format, and the lines about each order (tests/integration/test_logs.py)
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # The API's /metrics sums every process's series from here (order_engine/infra/metrics.py).
        "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "metrics"),
    }
    purge_broker(settings["CELERY_BROKER_URL"])  # drop messages left by earlier sessions
    stack = Stack(
        name="live",
        settings=settings,
        log_dir=log_dir,
        port=port,
        localnet=localnet,
        owns_localnet=False,
    )
    try:
        stack.start_api(wait=False)
        stack.start_worker(wait=False)
        stack.wait_api()
        stack.wait_log("worker", " ready.", 60)
    except BaseException:
        stack.close()
        raise
    return stack
