"""Shared fixtures (helpers live in tests/support): real PostgreSQL and Redis for every test.

The servers are the ones named by DATABASE_URL / REDIS_URL when set, else the embedded ones
(started once per session, stopped at the end). Tests get their own database, migrated once per
session with Alembic, and their own Redis databases: one for application keys (flushed per test)
and one for the Celery broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from order_engine.app import create_app
from order_engine.ops.launch import stop_process
from tests.support.clients import TEST_API_KEY
from tests.support.commits import TestCommits, on_test_session
from tests.support.servers import (
    APP_REDIS_DB,
    BROKER_REDIS_DB,
    TEST_DATABASE,
    Servers,
    migrated_database,
    select_servers,
)
from tests.support.stack import UNLIMITED, Localnet, Stack, start_live_stack, start_localnet


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with select_servers() as selected:
        yield selected


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> str:
    return migrated_database(servers.database_url(TEST_DATABASE))


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    started = start_localnet(Path(tmp_path_factory.mktemp("localnet")))
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
    from tests.support import brokers

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
        "CELERY_OVERRIDES": "true" if brokers.CELERY_OVERRIDES else "false",
        **UNLIMITED,
    }


@pytest.fixture
def redis_client(test_settings: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(test_settings["REDIS_URL"], decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def test_commits(engine: Engine) -> Iterator[TestCommits]:
    """What the test commits beside its rolled-back session (tests.support.commits): deleted
    after it, once that session has rolled back (`db_session` depends on this fixture)."""
    commits = TestCommits(engine)
    yield commits
    commits.delete()


@pytest.fixture
def db_session(engine: Engine, test_commits: TestCommits) -> Iterator[Session]:
    """A session inside a transaction rolled back after the test (savepoint per commit). An
    app on it commits intake for real (`on_test_session`), as in production; what it
    committed goes after the rollback."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    session.info["commits"] = test_commits
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def app_settings(test_settings: dict[str, str], broker_url: str) -> Iterator[dict[str, str]]:
    """The settings of an in-process app: its tasks go where no worker reads them (its orders
    are committed for real; tests.support.brokers.unread_broker), emptied after the test."""
    from tests.support.brokers import unread_broker

    settings = unread_broker(test_settings, broker_url)
    yield settings
    if settings["CELERY_BROKER_URL"] != test_settings["CELERY_BROKER_URL"]:
        client = redis.Redis.from_url(settings["CELERY_BROKER_URL"])
        client.flushdb()
        client.close()


@pytest.fixture
def app(app_settings: dict[str, str], db_session: Session, redis_client: redis.Redis):
    """A Flask app whose every session is the test's rolled-back session, its intake
    committed for real (and deleted after the test)."""
    return on_test_session(create_app(app_settings), db_session)


@pytest.fixture
def client(app):
    """A test client that sends the suite's API key (tests.support.clients.TEST_API_KEY)."""
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
        conn.execute(text("TRUNCATE orders, order_events, trailing_peaks CASCADE"))


@pytest.fixture(scope="session")
def live_stack(
    test_settings: dict[str, str], localnet: Localnet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """gunicorn + a Celery worker as real child processes against the session's servers and
    localnet, each started as `make run` starts it (tests.support.stack)."""
    stack = start_live_stack(test_settings, localnet, tmp_path_factory.mktemp("live-stack"))
    yield stack
    stack.close()
