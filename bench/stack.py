"""The stack under measurement: the servers, the bench database, the localnet, gunicorn, a worker
and the scheduler, started by the launcher the tests use (`order_engine.ops.launch`).

Like `make run`, it uses the PostgreSQL and Redis named by DATABASE_URL / REDIS_URL, or else
starts the embedded ones, and every process gets the command line `make run` gives it, the
same gunicorn and Celery settings as the product, so the comparisons stay fair: gunicorn serves
`bench.web` (the product's app with the baseline and floor routes added) and the worker runs
`bench.worker` (the product's Celery app with two no-op tasks added). It keeps the benchmark's
data apart from anyone else's on those servers: its own database (recreated each run) and its
own two Redis databases (app and broker), which it empties between phases.

The chain is a localnet process of its own on a free loopback port, its state and a wallet
keypair under the run folder. The venue latencies are the localnet's settings, so a phase that
needs others restarts it (`ensure_localnet`); its state carries over and the URL stays. The
scheduler (Celery beat: the reconciler, the trigger engine) runs beside the worker, as with
`make run`: `start_worker` starts it too and stopping the worker stops it.

It finds the servers' processes from the servers themselves (the backend's parent is the
postmaster; Redis reports its `process_id`) and counts its own use of them (transactions,
connections, Redis commands), so that a phase's figures leave the benchmark out. Every process
started here is stopped by `close()`, which `python -m bench` calls on any exit.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from bench import NOOP_TASK, counters, procs
from bench.monitor import RootPids, children_titled
from order_engine.chain.wallet import ensure_dev_keypair
from order_engine.config import Settings, _process_environment
from order_engine.localnet.config import LocalnetSettings
from order_engine.ops import embedded, migrate
from order_engine.ops.launch import (
    Launcher,
    child_settings,
    free_port,
    rpc,
    scheduler_argv,
    worker_argv,
)

log = logging.getLogger("bench.stack")

BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "order_engine_bench")
APP_REDIS_DB, BROKER_REDIS_DB = (
    int(db) for db in os.environ.get("BENCH_REDIS_DBS", "12,13").split(",", 1)
)
TASK_QUEUE = "orders"
READY_TIMEOUT_S = 90
# Environment names recorded with the results (never the URLs: they may hold passwords).
SETTING_PREFIXES = ("DEX_", "LOCALNET_", "ORDER_", "WEB_", "API_", "WORKER_", "TASK_", "BROKER_")
SETTING_PREFIXES += ("WS_", "LOG_", "PORT", "RECONCILE_INTERVAL_S")


class Stack:
    def __init__(self, run_dir: Path, port: int, wsgi_app: str = "bench.web:create('project')"):
        self.run_dir, self.port, self.wsgi_app = run_dir, port, wsgi_app
        self.launcher = Launcher(run_dir / "logs")
        self.embedded: embedded.EmbeddedServers | None = None
        self.database_url = self.redis_url = self.broker_url = self.admin_url = ""
        self.owns_broker_db = False
        self.engine: Engine | None = None
        self.process_env: dict[str, dict[str, str]] = {}  # the settings of each last start
        self.settings: dict[str, Settings] = {}
        self.localnet_port = free_port()
        self.localnet_latency: dict[str, str] | None = None
        self.localnet_settings: LocalnetSettings | None = None
        self.database_name = BENCH_DATABASE
        self.redis_clients: dict[str, redis.Redis] = {}
        self.redis_dbs = {APP_REDIS_DB, BROKER_REDIS_DB}
        self.server_roots: dict[str, list[int]] = {"postgres": [], "redis": []}
        self.own_usage: Counter[str] = Counter()  # the bench's own use, left out of the figures
        self.account_id: uuid.UUID | None = None  # the bench API key's account
        self._celery: Any = None
        self._broker: redis.Redis | None = None

    # -- servers and data -------------------------------------------------------------------

    def start_servers(self) -> None:
        """Resolve (or start) PostgreSQL and Redis, recreate the bench database, migrate."""
        configured = _process_environment()  # like `make run`: .env, then the environment
        database_url, redis_url = configured.get("DATABASE_URL"), configured.get("REDIS_URL")
        if not database_url or not redis_url:
            log.info("DATABASE_URL/REDIS_URL unset: using the embedded servers")
            self.embedded = embedded.start()
            database_url = database_url or self.embedded.database_url
            redis_url = redis_url or self.embedded.redis_url
        self.database_url = _recreate_database(database_url, BENCH_DATABASE)
        self.redis_url = _redis_db(redis_url, APP_REDIS_DB)
        self.broker_url = configured.get("CELERY_BROKER_URL") or _redis_db(
            redis_url, BROKER_REDIS_DB
        )
        self.owns_broker_db = not configured.get("CELERY_BROKER_URL")
        ensure_dev_keypair(self.run_dir / "wallet.json")
        migrate.upgrade(self.database_url)
        self.engine = create_engine(self.database_url, pool_size=2)
        for name, key in (("commit", "pg_commits"), ("rollback", "pg_rollbacks")):
            event.listen(self.engine, name, lambda _c, key=key: self.own_usage.update([key]))
        event.listen(self.engine, "connect", lambda *_: self.own_usage.update(["pg_connects"]))
        self.admin_url = counters.admin_url(self.database_url)
        self.redis_clients = counters.redis_servers([self.redis_url, self.broker_url])
        self.server_roots = {"postgres": self._postmaster(), "redis": self._redis_servers()}
        log.info("server processes: %s", self.server_roots)
        self._create_api_key()
        self.reset()

    def _postmaster(self) -> list[int]:
        """The PostgreSQL server's pid, if it runs on this machine: the backend's parent."""
        with self.db.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return _local_process(int(backend), ("postgres", "postmaster"), parent=True)

    def _redis_servers(self) -> list[int]:
        """The Redis servers' pids (app and broker; one when they share a server), if local."""
        pids: list[int] = []
        for client in self.redis_clients.values():
            pid = int(client.info("server").get("process_id", 0))
            pids += [p for p in _local_process(pid, ("redis-server", "redis")) if p not in pids]
        return pids

    def _create_api_key(self) -> None:
        """The load generators' API key, exported to every child process."""
        from sqlalchemy.orm import Session

        from order_engine.services.access import AccessService

        with Session(self.engine, expire_on_commit=False) as session:
            created = AccessService(session).create_key(
                "bench", "make bench", ["orders:read", "orders:write"]
            )
        os.environ["BENCH_API_KEY"] = created.secret
        self.account_id = created.account.id

    def reset(self) -> None:
        """Empty the bench tables and Redis databases (workers must be stopped)."""
        with self.db.begin() as conn:
            conn.execute(text("TRUNCATE orders, order_events CASCADE"))
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
    def server_kind(self) -> str:
        if self.embedded is None:
            return "the machine's (DATABASE_URL / REDIS_URL)"
        return "embedded (started by this run)"

    @property
    def db(self) -> Engine:
        assert self.engine is not None, "start_servers() first"
        return self.engine

    def queue_length(self) -> int | None:
        if not self.broker_url.startswith("redis"):
            return None
        self.own_usage["redis:llen"] += 1
        self._broker = self._broker or redis.Redis.from_url(self.broker_url)
        return int(self._broker.llen(TASK_QUEUE))

    def env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of an engine process: the bench's servers, localnet and wallet."""
        metrics = os.environ.get("BENCH_METRICS") != "off"  # off: in-memory, per process
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            "SOLANA_RPC_URL": self.localnet_url,
            "WALLET_KEYPAIR": str(self.run_dir / "wallet.json"),
            "PORT": str(self.port),
            # One account drives the whole benchmark: its limits must not be what is measured.
            "RATE_LIMIT_PER_S": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "MAX_ORDERS_IN_FLIGHT": "0",  # no cap: no count per submission
            "MAX_WEBSOCKETS": "100000",
            # The trigger phase counts and times evaluations from the worker's lines.
            "LOG_CONTROL_TASKS": "true",
            # As `make run`, every process writes its metrics there (multiprocess mode), so
            # the cost per order includes them.
            **({"PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics")} if metrics else {}),
            **(overrides or {}),
        }

    @property
    def localnet_url(self) -> str:
        return f"http://127.0.0.1:{self.localnet_port}"

    def localnet_rpc(self, method: str, params: Any = None) -> Any:
        """One JSON-RPC call to the localnet (admin methods too: `localnet_move`, …)."""
        return rpc(self.localnet_url, method, params)

    def celery(self) -> Any:
        """The product's Celery app, for probes sent from this (non-load) process."""
        if self._celery is None:
            from order_engine.app import create_app

            self._celery = create_app(self.env()).extensions["celery"]
        return self._celery

    # -- processes --------------------------------------------------------------------------

    def ensure_localnet(self, latency: dict[str, str]) -> list[str] | None:
        """A running localnet with these latencies: (re)started unless it already is one (only
        while no worker runs: its transactions in flight would be lost). Returns the command
        line when it (re)started the localnet."""
        if self.pids("localnet") and self.localnet_latency == latency:
            return None
        return self.start_localnet(latency)

    def start_localnet(self, latency: dict[str, str]) -> list[str]:
        self.stop("localnet")
        env = {**os.environ, "LOCALNET_STATE_DIR": str(self.run_dir / "localnet"), **latency}
        self.localnet_settings = LocalnetSettings.from_env({**_process_environment(), **env})
        self._record("localnet", env)
        self.launcher.start_localnet(env, self.localnet_port, timeout_s=READY_TIMEOUT_S)
        self.localnet_latency = dict(latency)
        return self.launcher.commands["localnet"]

    def start_api(self, overrides: Mapping[str, str] | None = None) -> list[str]:
        """gunicorn as `make run` starts it, serving `wsgi_app`; waits until /readyz is 200."""
        self.stop("api")
        env = self._record("api", self.env(overrides))
        self.launcher.start_api(env, self.port, app=self.wsgi_app, wait=False)
        self.launcher.wait_api(self.port, READY_TIMEOUT_S)
        return self.launcher.commands["api"]

    def start_worker(
        self,
        overrides: Mapping[str, str] | None = None,
        wait_ready: bool = True,
        with_scheduler: bool = True,
    ) -> list[str]:
        """The Celery worker as `make run` starts it, as `bench.worker` (the product's app and
        the bench's no-op tasks). Ready means it ran a `bench.noop` probe; with tasks already
        queued the probe would wait behind them, so `wait_ready=False` only checks that the
        process stays up."""
        self.stop("worker")
        env = self._record("worker", self.env(overrides))
        argv = worker_argv(self.settings["worker"], "bench@%h", app="bench.worker")
        self.launcher.start("worker", argv, env)
        if wait_ready:
            self.launcher.wait("worker", self._worker_ready, "a bench.noop probe", READY_TIMEOUT_S)
        else:
            time.sleep(1.0)
            self.launcher.wait("worker", lambda: True, "the worker process")
        if with_scheduler:
            self.start_scheduler(overrides)
        return argv

    def start_scheduler(self, overrides: Mapping[str, str] | None = None) -> list[str]:
        """Celery beat as `make run` starts it, its schedule file in the run folder."""
        env = self._record("scheduler", self.env(overrides))
        schedule = self.run_dir / "celerybeat-schedule"
        argv = scheduler_argv(self.settings["scheduler"], schedule)
        self.launcher.start("scheduler", argv, env)
        time.sleep(0.5)
        self.launcher.wait("scheduler", lambda: True, "the scheduler process")
        return argv

    def _record(self, name: str, env: dict[str, str]) -> dict[str, str]:
        if name != "localnet":  # the engine's settings; the localnet reads its own
            self.settings[name] = child_settings(env)
        self.process_env[name] = {k: env[k] for k in sorted(env) if k.startswith(SETTING_PREFIXES)}
        return env

    def stop(self, name: str, grace_s: float = 20.0) -> None:
        """SIGTERM (Celery and gunicorn shut down cleanly), then kill its group. Stopping the
        worker stops the scheduler too (they run together)."""
        if name == "worker":
            self.stop("scheduler", grace_s=min(grace_s, 10))
        self.launcher.stop(name, grace_s)

    def close(self) -> None:
        # The engine's processes first, the chain they talk to last.
        self.launcher.close(20.0, last=("localnet",))
        if self.engine is not None:
            self.engine.dispose()
        if self.embedded is not None:
            log.info("stopping the embedded servers this run started")
            self.embedded.stop()

    def pids(self, name: str) -> list[int]:
        return [self.launcher.pid(name)] if self.launcher.running(name) else []

    def child_pids(self, name: str) -> list[int]:
        """The pids of a process's children (gunicorn's workers)."""
        try:
            return [child.pid for child in psutil.Process(self.pids(name)[0]).children()]
        except (IndexError, psutil.Error):
            return []

    def server_pids(self, name: str) -> list[int]:
        """The postmaster / redis-server pids of the servers in use, when they are local."""
        return [pid for pid in self.server_roots.get(name, []) if psutil.pid_exists(pid)]

    def log_path(self, name: str) -> Path:
        return self.launcher.log_path(name)

    def _worker_ready(self) -> bool:
        key = f"bench:probe:{uuid.uuid4().hex}"
        client = redis.Redis.from_url(self.redis_url)
        self.celery().send_task(NOOP_TASK, kwargs={"counter": key})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if client.get(key):
                client.delete(key)
                return True
            time.sleep(0.05)
        return False


def monitor_groups(stack: Stack) -> dict[str, RootPids]:
    """The process groups; PostgreSQL and Redis are the servers the stack uses (found from
    the servers themselves), `postgres_bench` the backends connected to the bench database."""
    return {
        "api": lambda: stack.pids("api"),
        "worker": lambda: stack.pids("worker"),
        "scheduler": lambda: stack.pids("scheduler"),
        "localnet": lambda: stack.pids("localnet"),
        "postgres": lambda: stack.server_pids("postgres"),
        "postgres_bench": lambda: children_titled(
            stack.server_pids("postgres"), stack.database_name
        ),
        "redis": lambda: stack.server_pids("redis"),
        "loadgen": procs.running_pids,
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
    """[pid] (or its parent's) if it is a process of this machine with one of these names.

    A server on another host (or in a container with its own pid namespace) reports a pid
    that means nothing here: then its CPU is not measured, and the report says so."""
    try:
        process = psutil.Process(pid)
        if parent:
            process = psutil.Process(process.ppid())
        if any(name in process.name() for name in names):
            return [process.pid]
    except psutil.Error:
        pass
    log.warning("no local process for a server pid %s: its CPU is not measured", pid)
    return []


def _redis_db(url: str, db: int) -> str:
    base, _, tail = url.rstrip("/").rpartition("/")
    if tail.isdigit() and base.count("/") >= 2:
        return f"{base}/{db}"
    return f"{url.rstrip('/')}/{db}"
