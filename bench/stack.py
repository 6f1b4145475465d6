"""The stack under measurement (servers, bench database, localnet, gunicorn, a worker and the
scheduler), started by the launcher the tests use (`order_engine.ops.launch`).

Like `make run`, it uses the servers named by DATABASE_URL / REDIS_URL or else the embedded
ones, and every process gets `make run`'s command line and settings: gunicorn serves `bench.web`
and the worker runs `bench.worker` (the product's apps with the bench's routes and no-op tasks).
Its data stays apart: its own database (BENCH_DATABASE, recreated each run) and two Redis
databases (BENCH_REDIS_DBS), emptied between phases. A phase that needs other venue latencies
restarts the localnet (`ensure_localnet`; its state carries over). Beat runs beside the worker.
It finds the servers' processes from the servers themselves and counts its own use of them, so
a phase's figures leave the benchmark out. `close()` stops everything it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from bench import NOOP_TASK, loadgen
from bench.monitor import Monitor, RootPids, children_titled, redis_servers
from order_engine.chain.wallet import ensure_dev_keypair
from order_engine.config import Settings, _process_environment
from order_engine.ops import embedded, launch, migrate

log = logging.getLogger("bench.stack")

BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "order_engine_bench")
APP_DB, BROKER_DB = (int(db) for db in os.environ.get("BENCH_REDIS_DBS", "12,13").split(",", 1))
TASK_QUEUE, SCOPES = "orders", ["orders:read", "orders:write"]
READY_TIMEOUT_S = 90
# One account drives the whole benchmark: its limits must not be what is measured (no in-flight
# cap: no count per submission). The trigger phase counts evaluations from the worker's lines.
ENGINE_SETTINGS = {"RATE_LIMIT_PER_S": "1000000", "RATE_LIMIT_BURST": "1000000"}
ENGINE_SETTINGS |= {"MAX_ORDERS_IN_FLIGHT": "0", "MAX_WEBSOCKETS": "100000"}
# The trigger phase's book of waiting orders is far beyond the default cap.
ENGINE_SETTINGS |= {"MAX_WAITING_ORDERS": "0", "AUTH_FAILURE_LIMIT": "0"}
ENGINE_SETTINGS["LOG_CONTROL_TASKS"] = "true"
# Environment names recorded with the results (never the URLs: they may hold passwords).
SETTING_PREFIXES = ("DEX_", "LOCALNET_", "ORDER_", "WEB_", "API_", "WORKER_", "TASK_", "BROKER_")
SETTING_PREFIXES += ("WS_", "LOG_", "PORT", "RECONCILE_INTERVAL_S")


class Stack:
    """The bench's servers, data and processes (a `Launcher`'s), and its own use of them."""

    engine: Engine | None

    def __init__(self, run_dir: Path, port: int) -> None:
        self.run_dir, self.port = run_dir, port
        self.launcher = launch.Launcher(run_dir / "logs")
        self.embedded: embedded.EmbeddedServers | None = None
        self.database_url = self.redis_url = self.broker_url = ""
        self.owns_broker_db, self.engine = False, None
        self.server_kind = "the machine's (DATABASE_URL / REDIS_URL)"
        self.process_env: dict[str, dict[str, str]] = {}  # the settings of each last start
        self.settings: dict[str, Settings] = {}
        self.localnet_port = launch.free_port()
        self.localnet_latency: dict[str, str] | None = None
        self.database_name, self.redis_dbs = BENCH_DATABASE, {APP_DB, BROKER_DB}
        self.redis_clients: dict[str, redis.Redis] = {}
        self.server_roots: dict[str, list[int]] = {"postgres": [], "redis": []}
        self.own_usage: Counter[str] = Counter()  # the bench's own use, left out of the figures
        self.account_id: uuid.UUID | None = None  # the bench API key's account
        self._celery: Any = None

    def start_servers(self) -> None:
        """Resolve (or start) PostgreSQL and Redis, recreate the bench database, migrate."""
        configured = _process_environment()  # like `make run`: .env, then the environment
        database_url, redis_url = configured.get("DATABASE_URL"), configured.get("REDIS_URL")
        if not database_url or not redis_url:
            log.info("DATABASE_URL/REDIS_URL unset: using the embedded servers")
            self.embedded = embedded.start()
            self.server_kind = "embedded (started by this run)"
            database_url = database_url or self.embedded.database_url
            redis_url = redis_url or self.embedded.redis_url
        self.database_url = _recreate_database(database_url, BENCH_DATABASE)
        self.redis_url = _redis_db(redis_url, APP_DB)
        self.broker_url = configured.get("CELERY_BROKER_URL") or _redis_db(redis_url, BROKER_DB)
        self.owns_broker_db = not configured.get("CELERY_BROKER_URL")
        ensure_dev_keypair(self.run_dir / "wallet.json")
        migrate.upgrade(self.database_url)
        self.engine = create_engine(self.database_url, pool_size=2)
        for name, key in (("commit", "pg_commits"), ("rollback", "pg_rollbacks")):
            event.listen(self.engine, name, lambda _c, key=key: self.own_usage.update([key]))
        event.listen(self.engine, "connect", lambda *_: self.own_usage.update(["pg_connects"]))
        self.redis_clients = redis_servers([self.redis_url, self.broker_url])
        with self.db.connect() as conn:  # the backend's parent is the postmaster
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        redis_pids = {int(c.info("server")["process_id"]) for c in self.redis_clients.values()}
        self.server_roots = {
            "postgres": _local_process(int(backend), ("postgres", "postmaster"), parent=True),
            "redis": [p for pid in redis_pids for p in _local_process(pid, ("redis",))],
        }
        log.info("server processes: %s", self.server_roots)
        self._create_api_key()
        self.reset()

    def _create_api_key(self) -> None:
        """The load generators' API key (docs/api.md), exported to every child process."""
        from sqlalchemy.orm import Session

        from order_engine.services.access import AccessService

        with Session(self.engine, expire_on_commit=False) as session:
            created = AccessService(session).create_key("bench", "make bench", SCOPES)
        os.environ["BENCH_API_KEY"], self.account_id = created.secret, created.account.id

    def reset(self) -> None:
        """Empty the bench tables and Redis databases (workers must be stopped)."""
        with self.db.begin() as conn:
            conn.execute(text("TRUNCATE orders, order_events, trailing_peaks CASCADE"))
        redis.Redis.from_url(self.redis_url).flushdb()
        if self.owns_broker_db:
            redis.Redis.from_url(self.broker_url).flushdb()
            return
        with self.celery().connection_for_write() as conn:
            try:
                conn.default_channel.queue_purge(TASK_QUEUE)
            except conn.channel_errors as exc:  # a fresh vhost: no queue to empty yet
                log.info("%s not purged: %s", TASK_QUEUE, exc)

    @property
    def db(self) -> Engine:
        assert self.engine is not None, "start_servers() first"
        return self.engine

    def env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of an engine process: the bench's servers, localnet and wallet."""
        # As `make run`, every process writes its metrics there (multiprocess mode), so the cost
        # per order includes them; BENCH_METRICS=off keeps them in memory, per process.
        metrics = {"PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics")}
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            "SOLANA_RPC_URL": self.localnet_url,
            "WALLET_KEYPAIR": str(self.run_dir / "wallet.json"),
            "PORT": str(self.port),
            **ENGINE_SETTINGS,
            **({} if os.environ.get("BENCH_METRICS") == "off" else metrics),
            **(overrides or {}),
        }

    @property
    def localnet_url(self) -> str:
        return f"http://127.0.0.1:{self.localnet_port}"

    def localnet_rpc(self, method: str, params: Any = None) -> Any:
        """One JSON-RPC call to the localnet (admin methods too: `localnet_move`, …)."""
        return launch.rpc(self.localnet_url, method, params)

    def celery(self) -> Any:
        """The product's Celery app, for probes sent from this (non-load) process."""
        if self._celery is None:
            from order_engine.app import create_app

            self._celery = create_app(self.env()).extensions["celery"]
        return self._celery

    def ensure_localnet(self, latency: dict[str, str]) -> None:
        """A running localnet with these latencies: (re)started unless it already is one (only
        while no worker runs: its transactions in flight would be lost)."""
        if not self.pids("localnet") or self.localnet_latency != latency:
            self.start_localnet(latency)

    def start_localnet(self, latency: dict[str, str]) -> None:
        self.stop("localnet")
        env = {**os.environ, "LOCALNET_STATE_DIR": str(self.run_dir / "localnet"), **latency}
        self._record("localnet", env)
        self.launcher.start_localnet(env, self.localnet_port, timeout_s=READY_TIMEOUT_S)
        self.localnet_latency = dict(latency)

    def start_api(self, overrides: Mapping[str, str] | None = None) -> None:
        """gunicorn as `make run` starts it, serving `bench.web`; waits until /readyz is 200."""
        self.stop("api")
        env = self._record("api", self.env(overrides))
        self.launcher.start_api(env, self.port, app="bench.web:create()", wait=False)
        self.launcher.wait_api(self.port, READY_TIMEOUT_S)

    def start_worker(
        self, overrides: Mapping[str, str] | None = None, wait_ready: bool = True, beat: bool = True
    ) -> None:
        """The Celery worker as `make run` starts it, as `bench.worker`, and beat (schedule file
        in the run folder) unless `beat` is false. Ready means it ran a `bench.noop` probe; with
        tasks already queued the probe would wait behind them, so `wait_ready=False` only checks
        that the process stays up."""
        self.stop("worker")
        env = self._record("worker", self.env(overrides))
        for index, name in enumerate(self.worker_names()):
            host = "bench@%h" if index == 0 else f"bench{index + 1}@%h"
            argv = launch.worker_argv(self.settings["worker"], host, app="bench.worker")
            self.launcher.start(name, argv, env)
        if not wait_ready:
            time.sleep(1.0)
        ready = self._worker_ready if wait_ready else (lambda: True)
        self.launcher.wait("worker", ready, "a bench.noop probe", READY_TIMEOUT_S)
        if beat:
            schedule = self.run_dir / "celerybeat-schedule"
            self._record("scheduler", env)
            self.launcher.start(
                "scheduler", launch.scheduler_argv(self.settings["worker"], schedule), env
            )
            time.sleep(0.5)
            self.launcher.wait("scheduler", lambda: True, "the scheduler process")

    def _record(self, name: str, env: dict[str, str]) -> dict[str, str]:
        if name != "localnet":  # the engine's settings; the localnet reads its own
            self.settings[name] = launch.child_settings(env)
        self.process_env[name] = {k: env[k] for k in sorted(env) if k.startswith(SETTING_PREFIXES)}
        return env

    def _worker_ready(self) -> bool:
        key, client = f"bench:probe:{uuid.uuid4().hex}", redis.Redis.from_url(self.redis_url)
        self.celery().send_task(NOOP_TASK, kwargs={"counter": key})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not client.get(key):
            time.sleep(0.05)
        return bool(client.delete(key))

    def stop(self, name: str, grace_s: float = 20.0) -> None:
        """SIGTERM (Celery and gunicorn shut down cleanly), then kill its group. Stopping the
        worker stops the scheduler too (they run together)."""
        if name == "worker":
            self.stop("scheduler", grace_s=min(grace_s, 10))
            for other in self.worker_names()[1:]:
                self.launcher.stop(other, grace_s)
        self.launcher.stop(name, grace_s)

    def close(self) -> None:
        self.launcher.close(20.0, last=("localnet",))  # the chain they talk to last
        if self.engine is not None:
            self.engine.dispose()
        if self.embedded is not None:
            log.info("stopping the embedded servers this run started")
            self.embedded.stop()

    def pids(self, name: str) -> list[int]:
        """The process's pid (the worker: every worker process's), while it runs."""
        names = self.worker_names() if name == "worker" else [name]
        return [self.launcher.pid(n) for n in names if self.launcher.running(n)]

    @staticmethod
    def worker_names() -> list[str]:
        """BENCH_WORKER_PROCESSES worker processes on this host (default 1), each with
        WORKER_CONCURRENCY slots: "worker", "worker2", …"""
        count = int(os.environ.get("BENCH_WORKER_PROCESSES", "1"))
        return ["worker"] + [f"worker{n}" for n in range(2, count + 1)]

    def child_pids(self, name: str) -> list[int]:
        """The pids of a process's children (gunicorn's workers)."""
        try:
            return [child.pid for child in psutil.Process(self.pids(name)[0]).children()]
        except (IndexError, psutil.Error):
            return []

    def server_pids(self, name: str) -> list[int]:
        """The postmaster / redis-server pids of the servers in use, when they are local."""
        return [pid for pid in self.server_roots.get(name, []) if psutil.pid_exists(pid)]


@contextlib.contextmanager
def session(out: str) -> Iterator[tuple[Stack, Monitor]]:
    """A timestamped run folder under `out`, its stack and the sampler, logging configured;
    SIGTERM raises KeyboardInterrupt like Ctrl-C, and on any way out every load generator,
    process and server started is stopped, so the caller can still write what was measured."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for chatty in ("pgserver", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    run_dir = Path(out) / datetime.now().strftime("%Y%m%d-%H%M%S")
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "raw").mkdir()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = Stack(run_dir, launch.free_port())
    monitor = Monitor(monitor_groups(stack), flat=("postgres_bench",))
    try:
        yield stack, monitor
    finally:
        loadgen.stop_all()
        monitor.stop()
        stack.close()


def monitor_groups(stack: Stack) -> dict[str, RootPids]:
    """The process groups; PostgreSQL and Redis are the servers the stack uses (found from
    the servers themselves), `postgres_bench` the backends connected to the bench database."""
    groups: dict[str, RootPids] = {
        name: lambda name=name: stack.pids(name)  # type: ignore[misc]
        for name in ("api", "worker", "scheduler", "localnet")
    }
    postgres = lambda: stack.server_pids("postgres")  # noqa: E731
    return groups | {
        "postgres": postgres,
        "postgres_bench": lambda: children_titled(postgres(), stack.database_name),
        "redis": lambda: stack.server_pids("redis"),
        "loadgen": loadgen.running_pids,
    }


def _recreate_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `server_url`; its SQLAlchemy URL."""
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def _local_process(pid: int, names: tuple[str, ...], parent: bool = False) -> list[int]:
    """[pid] (or its parent's) if it is a process of this machine with one of these names. A
    server on another host (or in a container with its own pid namespace) reports a pid that
    means nothing here: then its CPU is not measured, and the log says so."""
    try:
        process = psutil.Process(pid)
        process = psutil.Process(process.ppid()) if parent else process
        if any(name in process.name() for name in names):
            return [process.pid]
    except psutil.Error:
        pass
    log.warning("no local process for a server pid %s: its CPU is not measured", pid)
    return []


def _redis_db(url: str, db: int) -> str:
    base, _, tail = url.rstrip("/").rpartition("/")
    return f"{base}/{db}" if tail.isdigit() and base.count("/") >= 2 else f"{url.rstrip('/')}/{db}"
