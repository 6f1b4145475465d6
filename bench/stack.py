"""Start and stop the stack under test: the servers, the bench database, the localnet,
gunicorn, a worker.

Like `make run`, it uses the PostgreSQL and Redis named by DATABASE_URL / REDIS_URL, or else
starts the embedded ones, and it builds the localnet, API and worker command lines with the
same functions (`order_engine.ops.cli.localnet_program` / `api_program` / `worker_program`). It then
keeps the benchmark's data apart from anyone else's on those servers: its own database
(recreated each run) and its own two Redis databases (app and broker), which it may empty
between phases.

The chain is a localnet process of its own (simulated validator and pools, reached over
JSON-RPC at SOLANA_RPC_URL), on a free loopback port with its state under the run folder, and
a wallet keypair file there too (WALLET_KEYPAIR). The venue latencies are the localnet's
settings, so a phase that needs other latencies restarts it (`ensure_localnet`); its state
(pools, the wallet's token accounts) carries over, and the engine's processes keep the same URL.

The scheduler (Celery beat, which runs the reconciler) runs beside the worker, as with
`make run`: `start_worker` starts it too and stopping the worker stops it.

It also finds the servers' processes from the servers themselves (the backend's parent is the
postmaster; Redis reports its `process_id`), for the machine's servers and the embedded ones
alike, and counts its own use of them (transactions, connections, Redis commands) so that a
phase's figures can leave it out.

Every process started here is stopped by `close()`, which `python -m bench` calls on any exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from bench import counters, procs
from bench.monitor import RootPids, children_titled
from order_engine.chain.wallet import ensure_dev_keypair
from order_engine.config import Settings, _process_environment
from order_engine.localnet.config import LocalnetSettings
from order_engine.ops import embedded, migrate
from order_engine.ops.cli import api_program, localnet_program, scheduler_program, worker_program

log = logging.getLogger("bench.stack")

# Its own database on the server (BENCH_DATABASE: two runs side by side on one server).
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "order_engine_bench")
# The app's and the broker's Redis databases (BENCH_REDIS_DBS="12,13": two runs side by side
# on one server need two pairs).
APP_REDIS_DB, BROKER_REDIS_DB = (
    int(db) for db in os.environ.get("BENCH_REDIS_DBS", "12,13").split(",", 1)
)
TASK_QUEUE = "orders"
READY_TIMEOUT_S = 90


class StackError(RuntimeError):
    """The stack could not be started as the benchmark needs it; the message says why."""


class Stack:
    def __init__(self, run_dir: Path, port: int, wsgi_app: str) -> None:
        self.run_dir = run_dir
        self.port = port
        self.wsgi_app = wsgi_app
        self.embedded: embedded.EmbeddedServers | None = None
        self.database_url = self.redis_url = self.broker_url = ""
        self.owns_broker_db = False
        self.engine: Engine | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.process_env: dict[str, dict[str, str]] = {}
        self.settings: dict[str, Settings] = {}
        self._celery: Any = None
        self.localnet_port = free_port()
        self.localnet_state_dir = run_dir / "localnet"
        self.localnet_latency: dict[str, str] | None = None
        self.localnet_settings: LocalnetSettings | None = None
        self.wallet_path = run_dir / "wallet.json"
        # As `make run`: every process writes its metrics there (multiprocess mode), so the
        # cost per order measured here includes them. BENCH_METRICS=off leaves the variable
        # unset (in-memory, per-process metrics) for a comparison.
        self.metrics_dir = run_dir / "metrics"
        self.database_name = BENCH_DATABASE
        self.admin_url = ""
        self.redis_clients: dict[str, redis.Redis] = {}
        self.redis_dbs = {APP_REDIS_DB, BROKER_REDIS_DB}
        self.server_roots: dict[str, list[int]] = {"postgres": [], "redis": []}
        # The benchmark's own use of the servers, left out of a phase's figures.
        self.own_usage: Counter[str] = Counter()
        self.commands: dict[str, list[str]] = {}  # the last command line of each process
        self.account_id: uuid.UUID | None = None  # the bench API key's account
        self._broker_client: redis.Redis | None = None

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
        ensure_dev_keypair(self.wallet_path)
        migrate.upgrade(self.database_url)
        self.engine = create_engine(self.database_url, pool_size=2)
        self._count_own_use(self.engine)
        self.admin_url = counters.admin_url(self.database_url)
        self.redis_clients = counters.redis_servers([self.redis_url, self.broker_url])
        self.server_roots = {"postgres": self._postmaster(), "redis": self._redis_servers()}
        log.info("server processes: %s", self.server_roots)
        self._create_api_key()
        self.reset()

    def _count_own_use(self, engine: Engine) -> None:
        own = self.own_usage
        event.listen(engine, "commit", lambda _conn: own.update(["pg_commits"]))
        event.listen(engine, "rollback", lambda _conn: own.update(["pg_rollbacks"]))
        event.listen(engine, "connect", lambda _dbapi, _record: own.update(["pg_connects"]))

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
        """The load generators' API key (DESIGN §9), exported to every child process."""
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
        else:
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
        """The bench database (after `start_servers`)."""
        assert self.engine is not None, "start_servers() first"
        return self.engine

    def queue_length(self) -> int | None:
        if not self.broker_url.startswith("redis"):
            return None
        self.own_usage["redis:llen"] += 1
        if self._broker_client is None:
            self._broker_client = redis.Redis.from_url(self.broker_url)
        return int(self._broker_client.llen(TASK_QUEUE))

    def env(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of an engine process: the bench servers, the bench's localnet and
        wallet, the baseline endpoint on."""
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            "SOLANA_RPC_URL": self.localnet_url,
            "WALLET_KEYPAIR": str(self.wallet_path),
            "PORT": str(self.port),
            "BENCH_ENDPOINTS": "1",
            # One account drives the whole benchmark: its limits must not be what is measured.
            "RATE_LIMIT_PER_S": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "MAX_ORDERS_IN_FLIGHT": "0",  # no cap: no count per submission
            "MAX_WEBSOCKETS": "100000",
            # The trigger phase counts and times evaluations from the worker's lines.
            "LOG_CONTROL_TASKS": "true",
            **(
                {}
                if os.environ.get("BENCH_METRICS") == "off"
                else {"PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
            ),
            **(overrides or {}),
        }

    def localnet_env(self, latency: dict[str, str]) -> dict[str, str]:
        """The localnet's environment: its port and state folder, the phase's latencies."""
        return {
            **os.environ,
            "LOCALNET_PORT": str(self.localnet_port),
            "LOCALNET_HOST": "127.0.0.1",
            "LOCALNET_STATE_DIR": str(self.localnet_state_dir),
            **latency,
        }

    @property
    def localnet_url(self) -> str:
        return f"http://127.0.0.1:{self.localnet_port}"

    def celery(self) -> Any:
        """The product's Celery app, for probes sent from this (non-load) process."""
        if self._celery is None:
            from order_engine.app import create_app

            self._celery = create_app(self.env()).extensions["celery"]
        return self._celery

    # -- processes --------------------------------------------------------------------------

    def ensure_localnet(self, latency: dict[str, str]) -> list[str] | None:
        """A running localnet with these latencies: (re)start it unless it already is one.

        Returns the command line when it (re)started the localnet, else None. Restart it only
        while no worker runs: a worker's transactions in flight would be lost with it.
        """
        if self.pids("localnet") and self.localnet_latency == latency:
            return None
        return self.start_localnet(latency)

    def start_localnet(self, latency: dict[str, str]) -> list[str]:
        """`python -m order_engine.localnet serve` as `make run` starts it; wait for getHealth."""
        self.stop("localnet")
        env = self.localnet_env(latency)
        self.localnet_settings = LocalnetSettings.from_env({**_process_environment(), **env})
        argv = list(localnet_program(child_settings(self.env())).argv)
        self._start("localnet", argv, env)
        self.localnet_latency = dict(latency)
        self._wait("localnet", self._localnet_ready, "the localnet to answer getHealth")
        return argv

    def start_api(self, overrides: dict[str, str] | None = None) -> list[str]:
        """gunicorn as `make run` starts it, bound to loopback; wait until /readyz is 200."""
        env = self.env(overrides)
        settings = child_settings(env)
        argv = _with_option(list(api_program(settings).argv), "--bind", f"127.0.0.1:{self.port}")
        argv[argv.index("order_engine.wsgi:app")] = self.wsgi_app
        self._start("api", argv, env)
        self.settings["api"] = settings
        self._wait("api", self._api_ready, "the API to answer /readyz")
        self._check_baseline_endpoint()
        return argv

    def start_worker(
        self,
        overrides: dict[str, str] | None = None,
        wait_ready: bool = True,
        with_scheduler: bool = True,
    ) -> list[str]:
        """The Celery worker as `make run` starts it, plus the bench task module.

        Ready means it ran a `bench.noop` probe; with tasks already queued the probe would
        wait behind them, so `wait_ready=False` only checks that the process stays up.
        """
        env = self.env(overrides)
        settings = child_settings(env)
        argv = list(worker_program(settings).argv)
        argv = _with_option(argv, "--hostname", "bench@%h")
        argv += ["--include", "bench.worker"]
        self._start("worker", argv, env)
        self.settings["worker"] = settings
        if wait_ready:
            self._wait("worker", self._worker_ready, "the worker to run a bench.noop task")
        else:
            time.sleep(1.0)
            self._wait("worker", lambda: True, "the worker process")
        if with_scheduler:
            self.start_scheduler(overrides)
        return argv

    def start_scheduler(self, overrides: dict[str, str] | None = None) -> list[str]:
        """Celery beat as `make run` starts it (the reconciler every RECONCILE_INTERVAL_S),
        its schedule file in the run folder."""
        env = self.env(overrides)
        argv = list(scheduler_program(child_settings(env)).argv)
        argv = _with_option(argv, "--schedule", str(self.run_dir / "celerybeat-schedule"))
        self._start("scheduler", argv, env)
        time.sleep(0.5)
        self._wait("scheduler", lambda: True, "the scheduler process")
        return argv

    def stop(self, name: str, grace_s: float = 20.0) -> None:
        """SIGTERM the process (Celery/gunicorn shut down cleanly), then kill its group.

        Stopping the worker stops the scheduler too (they run together)."""
        if name == "worker":
            self.stop("scheduler", grace_s=min(grace_s, 10))
        process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", name, grace_s)
        # Whatever the process left in its group (gunicorn workers, pool threads' helpers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        # The engine's processes first, the chain they talk to last.
        for name in sorted(self.processes, key=lambda n: n == "localnet"):
            self.stop(name)
        if self.engine is not None:
            self.engine.dispose()
        if self.embedded is not None:
            log.info("stopping the embedded servers this run started")
            self.embedded.stop()

    def pids(self, name: str) -> list[int]:
        process = self.processes.get(name)
        return [process.pid] if process is not None and process.poll() is None else []

    def child_pids(self, name: str) -> list[int]:
        """The pids of a process's children (gunicorn's workers)."""
        try:
            return [child.pid for child in psutil.Process(self.pids(name)[0]).children()]
        except (IndexError, psutil.Error):
            return []

    def server_pids(self, name: str) -> list[int]:
        """The postmaster / redis-server pids of the servers in use, when they are local."""
        return [pid for pid in self.server_roots.get(name, []) if psutil.pid_exists(pid)]

    def _start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.stop(name)
        log_file = (self.run_dir / "logs" / f"{name}.log").open("ab")
        log_file.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        log_file.flush()
        self.processes[name] = subprocess.Popen(
            argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.process_env[name] = {k: env[k] for k in sorted(env) if _is_setting(k)}
        self.commands[name] = list(argv)
        log_file.close()  # the child holds its own descriptor

    def _wait(self, name: str, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise StackError(f"{name} exited with {process.returncode}; {self._tail(name)}")
            if ready():
                return
            time.sleep(0.5)
        raise StackError(f"timed out waiting for {what}; {self._tail(name)}")

    def _tail(self, name: str) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return "last log lines:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])

    def _api_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _localnet_ready(self) -> bool:
        try:
            return self.localnet_rpc("getHealth", timeout_s=2) == "ok"
        except (OSError, urllib.error.URLError, ValueError, StackError):
            return False

    def localnet_rpc(self, method: str, params: Any = None, timeout_s: float = 10) -> Any:
        """One JSON-RPC call to the localnet (admin methods too: `localnet_move`, …)."""
        call: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            call["params"] = params
        request = urllib.request.Request(
            self.localnet_url, data=json.dumps(call).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise StackError(f"localnet {method}: {reply['error']}")
        return reply.get("result")

    def _check_baseline_endpoint(self) -> None:
        request = urllib.request.Request(self.url("/bench/baseline"), data=b"{}", method="POST")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        if status != 202:
            raise StackError(
                f"POST /bench/baseline answered {status}, not 202: the app must call "
                "order_engine.api.bench.register(app) (it registers the endpoint when "
                "BENCH_ENDPOINTS=1, which the benchmark sets)"
            )

    def _worker_ready(self) -> bool:
        key = f"bench:probe:{uuid.uuid4().hex}"
        client = redis.Redis.from_url(self.redis_url)
        self.celery().send_task("bench.noop", kwargs={"counter": key})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if client.get(key):
                client.delete(key)
                return True
            time.sleep(0.05)
        return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


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


def child_settings(env: dict[str, str]) -> Settings:
    """The settings a child will read: the `.env` file under its environment."""
    return Settings.from_env({**_process_environment(), **env})


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    """Replace the value after `option` (gunicorn appends repeated --bind, so never add one)."""
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def _is_setting(name: str) -> bool:
    """Environment names worth recording as settings (never the URLs: they may hold passwords)."""
    prefixes = (
        "DEX_",
        "LOCALNET_",
        "ORDER_",
        "WEB_",
        "API_",
        "WORKER_",
        "TASK_",
        "BROKER_",
        "WS_",
        "LOG_",
    )
    return name.startswith(prefixes) or name in {"PORT", "BENCH_ENDPOINTS", "RECONCILE_INTERVAL_S"}
