"""Fixtures of the fault-injection suite: private servers and whole stacks, torn down always.

`make_stack(...)` builds a stack on a fresh database (on the shared test server, or on a
private PostgreSQL passed in), a private Redis (app keys in db 0, broker in db 1), its own
localnet process (the simulated chain, with its own state directory and a fresh wallet), then
starts the processes asked for. Everything started is stopped at teardown, even on failure;
a failed test prints the processes' logs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from order_engine.chain.wallet import ensure_dev_keypair
from order_engine.ops.launch import free_port
from tests.support.servers import (
    PostgresServer,
    RedisServer,
    Servers,
    drop_database,
    migrated_database,
)
from tests.support.stack import (
    FAULT_TIMINGS,
    LOCALNET_FAULT_TIMINGS,
    LOCALNET_SETTINGS,
    SENDER_FAULTS_APP,
    WORKER_APP,
    Stack,
    start_localnet,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


def _database_name(request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())
    # A random part: other sessions may run this suite on the same server at the same time.
    return f"oe_faults_{uuid.uuid4().hex[:8]}_{slug}"[:63]


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private Redis servers; all are shut down after the test."""
    started: list[RedisServer] = []

    def make(*, persistent: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started) + 1}", persistent=persistent)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A private PostgreSQL for the tests that stop and restart it."""
    server = PostgresServer(tmp_path_factory.mktemp("private-pg") / "pgdata")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_stack(
    servers: Servers,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    redis_factory: Callable[..., RedisServer],
) -> Iterator[Callable[..., Stack]]:
    """Factory: `make_stack(api=True, worker="threads", beat=True, postgres=None,
    redis_server=None, concurrency=8, api_workers=1, sender_faults=False, **settings)`;
    `worker` is a pool name or None; `settings` overlay FAULT_TIMINGS, or LOCALNET_FAULT_TIMINGS
    for the localnet's own settings (LOCALNET_SETTINGS); `sender_faults` runs the workers as
    the test app `tests.support.crashing_worker` (see `Stack.plant_sender_faults`)."""
    stacks: list[Stack] = []
    databases: list[str] = []

    def make(
        *,
        api: bool = True,
        worker: str | None = "threads",
        beat: bool = True,
        postgres: PostgresServer | None = None,
        redis_server: RedisServer | None = None,
        concurrency: int = 8,
        api_workers: int = 1,
        sender_faults: bool = False,
        **settings: str,
    ) -> Stack:
        name = _database_name(request)
        server_url = postgres.url(name) if postgres is not None else servers.database_url(name)
        database_url = migrated_database(server_url)
        databases.append(database_url)
        redis_server = redis_server or redis_factory()
        log_dir = tmp_path / f"stack-{len(stacks) + 1}"
        log_dir.mkdir()
        (log_dir / "localnet").mkdir()
        (log_dir / "sender-faults").mkdir()
        chain = {k: v for k, v in settings.items() if k in LOCALNET_SETTINGS}
        localnet = start_localnet(log_dir / "localnet", {**LOCALNET_FAULT_TIMINGS, **chain})
        port = free_port()
        engine_settings = {k: v for k, v in settings.items() if k not in LOCALNET_SETTINGS}
        stack = Stack(
            name=request.node.name,
            settings={
                **FAULT_TIMINGS,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_server.url(0),
                "CELERY_BROKER_URL": redis_server.url(1),
                "PORT": str(port),
                "SOLANA_RPC_URL": localnet.url,
                "WALLET_KEYPAIR": str(ensure_dev_keypair(log_dir / "wallet.json")),
                "SENDER_FAULTS_DIR": str(log_dir / "sender-faults"),
                # What `make run` gives every process (order_engine.ops.environment.Environment).
                "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "metrics"),
                "WEB_CONCURRENCY": str(api_workers),
                "WORKER_POOL": worker or "threads",
                "WORKER_CONCURRENCY": str(concurrency),
                **engine_settings,
            },
            log_dir=log_dir,
            port=port,
            localnet=localnet,
            redis_server=redis_server,
            worker_app=SENDER_FAULTS_APP if sender_faults else WORKER_APP,
        )
        stacks.append(stack)
        # Start everything, then wait: the three processes import the app in parallel.
        if api:
            stack.start_api(wait=False)
        if worker:
            stack.start_worker(wait=False)
        if beat:
            stack.start_beat(wait=False)
        if api:
            stack.wait_api()
        if worker:
            stack.wait_log("worker", " ready.", 60)
        if beat:
            stack.wait_log("beat", "beat: Starting", 60)
        return stack

    yield make
    failed = _failed(request)
    for stack in stacks:
        stack.close()
        if failed:
            print(f"\n===== logs of {stack.name} =====\n{stack.logs()}")
    for url in databases:
        drop_database(url)
