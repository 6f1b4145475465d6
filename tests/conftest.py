"""Shared fixtures: real PostgreSQL and Redis for every test that needs them.

The servers are the ones named by DATABASE_URL / REDIS_URL when set, else the embedded ones
(started once per session, stopped at the end). Tests get their own database, migrated once per
session with Alembic, and their own Redis databases: one for application keys (flushed per test)
and one for the Celery broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from order_engine import create_app, migrate

# Overridable so that two test sessions can share one server without stepping on each other.
TEST_DATABASE = os.environ.get("ORDER_ENGINE_TEST_DB", "order_engine_test")
APP_REDIS_DB, BROKER_REDIS_DB = (
    int(n) for n in os.environ.get("ORDER_ENGINE_TEST_REDIS_DBS", "15,14").split(",")
)


@dataclass(frozen=True)
class Servers:
    server_database_url: str
    server_redis_url: str

    def database_url(self, name: str) -> str:
        url = make_url(self.server_database_url).set(drivername="postgresql+psycopg")
        return url.set(database=name).render_as_string(hide_password=False)

    def redis_url(self, db: int) -> str:
        base = (
            self.server_redis_url.rsplit("/", 1)[0]
            if self._has_db_path()
            else (self.server_redis_url.rstrip("/"))
        )
        return f"{base}/{db}"

    def _has_db_path(self) -> bool:
        tail = self.server_redis_url.rsplit("/", 1)[-1]
        return tail.isdigit()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        yield Servers(database_url, redis_url)
        return
    from order_engine import embedded

    warnings.filterwarnings("ignore", module="platformdirs")
    started = embedded.start()
    try:
        yield Servers(database_url or started.database_url, redis_url or started.redis_url)
    finally:
        started.stop()


def recreate_database(servers: Servers, name: str) -> str:
    """Drop and create database `name` on the test server; return its SQLAlchemy URL."""
    admin = make_url(servers.database_url("postgres"))
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return servers.database_url(name)


def install_test_key(database_url: str) -> str:
    """Store the suite's API key (tests.clients.TEST_API_KEY: the default account, reading and
    writing orders) in a migrated test database; every client of the suite sends it."""
    from order_engine.models import DEFAULT_ACCOUNT_ID
    from order_engine.services.access import hash_key
    from tests.clients import TEST_API_KEY, TEST_API_KEY_PREFIX

    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, account_id, name, prefix, key_hash, scopes) "
                    "VALUES (gen_random_uuid(), :account, 'test suite', :prefix, :hash, "
                    "ARRAY['orders:read', 'orders:write']) ON CONFLICT (prefix) DO NOTHING"
                ),
                {
                    "account": DEFAULT_ACCOUNT_ID,
                    "prefix": TEST_API_KEY_PREFIX,
                    "hash": hash_key(TEST_API_KEY),
                },
            )
    finally:
        engine.dispose()
    return TEST_API_KEY


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> str:
    url = recreate_database(servers, TEST_DATABASE)
    migrate.upgrade(url)
    install_test_key(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


# The localnet's own settings (DESIGN §5): fast landings, no random failures, so tests decide
# every fault themselves (through the localnet's admin methods).
LOCALNET_TIMINGS = {
    "DEX_SEED": "7",
    "DEX_RPC_LATENCY_MS": "0",
    "DEX_SWAP_LATENCY_MS": "300-400",
    "DEX_TRANSIENT_FAILURE_RATE": "0",
    "DEX_EXPIRY_RATE": "0",
    "DEX_BLOCKHASH_VALIDITY_SLOTS": "151",
}


@dataclass
class Localnet:
    """A localnet process (the simulated validator) started by a test fixture."""

    url: str
    port: int
    state_dir: object
    process: object

    def call(self, method: str, *params: object) -> object:
        from tests.helpers import rpc

        return rpc(self.url, method, list(params))


def start_localnet(state_dir, extra_env: dict[str, str] | None = None) -> Localnet:
    import sys

    from tests.helpers import free_port, rpc, wait_until

    port = free_port()
    env = {
        **os.environ,
        **LOCALNET_TIMINGS,
        **(extra_env or {}),
        "LOCALNET_PORT": str(port),
        "LOCALNET_STATE_DIR": str(state_dir),
    }
    process = start_process(
        [sys.executable, "-m", "order_engine.localnet", "serve"], env, state_dir / "localnet.log"
    )
    url = f"http://127.0.0.1:{port}"
    localnet = Localnet(url, port, state_dir, process)
    try:
        wait_until(lambda: rpc(url, "getHealth", timeout_s=1) == "ok", 30, "the localnet")
    except AssertionError:
        stop_process(process)
        raise AssertionError((state_dir / "localnet.log").read_text(errors="replace")) from None
    return localnet


@pytest.fixture(scope="session")
def localnet(tmp_path_factory) -> Iterator[Localnet]:
    started = start_localnet(tmp_path_factory.mktemp("localnet"))
    yield started
    stop_process(started.process)


@pytest.fixture(scope="session")
def wallet_file(tmp_path_factory) -> str:
    from order_engine.chain.wallet import ensure_dev_keypair

    return str(ensure_dev_keypair(tmp_path_factory.mktemp("wallet") / "wallet.json"))


@pytest.fixture(scope="session")
def broker_url(servers: Servers) -> Iterator[str]:
    """The session's Celery broker: a Redis database, or RabbitMQ with `TEST_BROKER=rabbitmq`
    (tests.support.brokers; `make test-rabbitmq`)."""
    from tests.support import brokers

    if brokers.TEST_BROKER == "redis":
        yield os.environ.get("TEST_CELERY_BROKER_URL") or servers.redis_url(BROKER_REDIS_DB)
        return
    if brokers.TEST_BROKER != "rabbitmq":
        pytest.exit(f"TEST_BROKER must be redis or rabbitmq, got {brokers.TEST_BROKER!r}", 2)
    if not brokers.rabbitmq_reachable():
        pytest.skip(f"TEST_BROKER=rabbitmq but no RabbitMQ answers at {brokers.RABBITMQ_URL}")
    with brokers.rabbitmq_session_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def test_settings(
    servers: Servers, database_url: str, localnet: Localnet, wallet_file: str, broker_url: str
) -> dict[str, str]:
    """Environment-style settings for apps and child processes under test."""
    return {
        "SOLANA_RPC_URL": localnet.url,
        "WALLET_KEYPAIR": wallet_file,
        "DATABASE_URL": database_url,
        "REDIS_URL": servers.redis_url(APP_REDIS_DB),
        "CELERY_BROKER_URL": broker_url,
        "DEX_SEED": "7",
        "ORDER_RETRY_BACKOFF_S": "0",
        "ORDER_RETRY_BACKOFF_MAX_S": "1",
        "TASK_TIME_LIMIT_S": "30",
        "CONFIRM_TIMEOUT_S": "10",
        "RPC_TIMEOUT_S": "3",
        "ORDER_LEASE_S": "40",
        # Test sessions share one PostgreSQL (max_connections 100) with many processes.
        "DB_POOL_SIZE": "5",
        "BROKER_VISIBILITY_TIMEOUT_S": "60",
        "LOG_LEVEL": "WARNING",
        **UNLIMITED,
    }


# The suite's own traffic is not what the per-account limits are about; the tests of the limits
# set their own.
UNLIMITED = {
    "RATE_LIMIT_PER_S": "100000",
    "RATE_LIMIT_BURST": "100000",
    "MAX_ORDERS_IN_FLIGHT": "0",
    "MAX_WEBSOCKETS": "100000",
}


@pytest.fixture
def redis_client(test_settings: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(test_settings["REDIS_URL"], decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction rolled back after the test (savepoint per commit)."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def app(test_settings: dict[str, str], db_session: Session, redis_client: redis.Redis):
    """A Flask app whose every session is the test's rolled-back session."""
    app = create_app(test_settings)
    app.extensions["order_engine.session_factory"] = lambda: db_session
    return app


@pytest.fixture
def client(app):
    """A test client that sends the suite's API key (tests.clients.TEST_API_KEY)."""
    from tests.clients import TEST_API_KEY

    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TEST_API_KEY}"
    return test_client


@pytest.fixture
def anonymous_client(app):
    return app.test_client()


@pytest.fixture
def clean_tables(engine: Engine) -> Iterator[None]:
    """For tests whose other processes must see committed rows: empty the tables after."""
    yield
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE orders, order_events CASCADE"))


@dataclass
class LiveStack:
    """gunicorn + a Celery worker as real child processes, against the test servers."""

    base_url: str
    ws_url: str
    settings: dict[str, str]
    processes: dict[str, object]
    log_dir: object

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def start_process(argv: list[str], env: dict[str, str], log_path) -> object:
    import subprocess

    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process(process, timeout_s: float = 15) -> None:
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Whatever the process left in its group (pool children) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


LIVE_LATENCIES = {
    "WEB_CONCURRENCY": "1",
    "API_WORKER_CLASS": os.environ.get("TEST_API_WORKER_CLASS", "gevent"),
    "API_WORKER_CONNECTIONS": "1000",
    "WORKER_POOL": os.environ.get("TEST_WORKER_POOL", "gevent"),
    "WORKER_CONCURRENCY": os.environ.get("TEST_WORKER_CONCURRENCY", "100"),
}


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def api_argv(settings: dict[str, str], port: int) -> list[str]:
    """gunicorn exactly as `make run` starts it (order_engine.cli), bound to loopback."""
    from order_engine.cli import api_program
    from order_engine.config import Settings

    argv = api_program(Settings.from_env(settings)).argv
    return _with_option(list(argv), "--bind", f"127.0.0.1:{port}")


def worker_argv(settings: dict[str, str], name: str) -> list[str]:
    """The Celery worker exactly as `make run` starts it, with its own node name."""
    from order_engine.cli import worker_program
    from order_engine.config import Settings

    argv = worker_program(Settings.from_env(settings)).argv
    # INFO: tests wait for the worker's "ready" line.
    argv = _with_option(list(argv), "--loglevel", "INFO")
    return _with_option(argv, "--hostname", f"{name}@%h")


@pytest.fixture(scope="session")
def live_stack(test_settings, tmp_path_factory) -> Iterator[LiveStack]:
    import urllib.request

    from tests.helpers import free_port, wait_until
    from tests.support.brokers import purge_broker

    log_dir = tmp_path_factory.mktemp("live-stack")
    port = free_port()
    settings = {
        **test_settings,
        **LIVE_LATENCIES,
        "PORT": str(port),
        # Production's log format, and the lines about each order (tests/integration/test_logs.py)
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # The API's /metrics sums every process's series from here (order_engine/metrics.py).
        "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "metrics"),
    }
    env = {**os.environ, **settings}
    purge_broker(settings["CELERY_BROKER_URL"])  # drop messages left by earlier sessions
    processes = {
        "api": start_process(api_argv(settings, port), env, log_dir / "api.log"),
        "worker": start_process(worker_argv(settings, f"test-{port}"), env, log_dir / "worker.log"),
    }
    stack = LiveStack(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", settings, processes, log_dir
    )
    try:

        def ready() -> bool:
            with urllib.request.urlopen(f"{stack.base_url}/readyz", timeout=2) as response:
                return response.status == 200

        wait_until(ready, 60, "the API to be ready")
        wait_until(
            lambda: "ready" in (log_dir / "worker.log").read_text(),
            60,
            "the Celery worker to be ready",
        )
        yield stack
    finally:
        for process in processes.values():
            stop_process(process)
