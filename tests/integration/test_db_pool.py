"""Database pools are opened at start, so a burst of orders opens no connection."""

import threading

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session

from order_engine.infra import db
from order_engine.infra.db import make_engine, warm_pool
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


def test_a_warmed_pool_serves_a_burst_without_opening_a_connection(database_url):
    engine = make_engine(database_url, pool_size=4, max_overflow=0)
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    try:
        assert warm_pool(engine, 4) == 4
        assert (engine.pool.checkedin(), len(opened)) == (4, 4)

        def query() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_sleep(0.05)"))

        burst = [threading.Thread(target=query) for _ in range(12)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        assert len(opened) == 4  # the burst waited for pooled connections instead
    finally:
        engine.dispose()


def test_warming_a_pool_whose_database_is_down_is_not_fatal():
    engine = make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", pool_size=2, max_overflow=0
    )
    assert warm_pool(engine, 2) == 0
    engine.dispose()


def test_a_session_the_server_ended_is_replaced_at_checkout_without_a_ping(database_url):
    engine = make_engine(database_url, pool_size=2, max_overflow=0)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    try:
        with engine.connect() as conn:
            first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as conn:  # a healthy pooled connection is reused, unpinged
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid
        admin = make_engine(database_url, pool_size=1)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})

        def gone() -> bool:
            with admin.connect() as conn:
                sessions = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                return conn.execute(sessions, {"pid": first_pid}).scalar_one() == 0

        wait_until(gone, 5, "the terminated backend to exit")
        admin.dispose()
        # The first checkout after it must not hand out the dead session (no error, no retry).
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
        assert not [s for s in statements if "pg_backend_pid" not in s]
    finally:
        engine.dispose()


def test_a_pinging_pool_pings_only_connections_idle_past_the_window(database_url, monkeypatch):
    pings: list[int] = []
    failing: list[bool] = []
    execute = psycopg.Connection.execute

    def watched(self, query, *args, **kwargs):
        if query == ";":
            pings.append(self.info.backend_pid)
            if failing:
                failing.pop()
                raise psycopg.OperationalError("server closed the connection unexpectedly")
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", watched)
    engine = make_engine(database_url, pool_size=1, max_overflow=0, pre_ping=True)

    def backend() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

    try:
        first = backend()  # a new connection: no ping
        assert backend() == first  # back within the window: no ping
        assert pings == []
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # every connection is idle now
        assert backend() == first  # pinged and healthy: kept
        assert pings == [first]
        failing.append(True)
        replaced = backend()  # its ping failed: a new connection instead, and no error
        assert replaced != first
        assert pings == [first, first]  # the new one, just opened, was not pinged
    finally:
        engine.dispose()


@pytest.fixture
def engine_of_one(database_url):
    """An engine whose pool holds one connection: every checkout gets the same one."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def test_a_statement_run_alone_commits_by_itself_and_leaves_the_connection_for_transactions(
    engine_of_one,
):
    with engine_of_one.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS alone (n int)"))
    with Session(engine_of_one) as session:
        inserted = db.run_statement(
            session, "INSERT INTO alone VALUES (%(n)s) RETURNING n", {"n": 1}
        )
        assert inserted == [(1,)]
        assert not session.in_transaction()
        # The same pooled connection is back in transaction mode: this insert is rolled back
        # with its transaction.
        with session.begin():
            session.execute(text("INSERT INTO alone VALUES (2)"))
            session.rollback()
        assert db.run_statement(session, "SELECT n FROM alone ORDER BY n", {}) == [(1,)]


def test_a_statement_run_alone_fails_as_through_sqlalchemy_and_drops_a_broken_connection(
    engine_of_one,
):
    with Session(engine_of_one) as session:
        (pid,) = db.run_statement(session, "SELECT pg_backend_pid()", {})[0]
        with pytest.raises(DataError) as refused:  # psycopg's error, wrapped
            db.run_statement(session, "SELECT 1 / %(zero)s", {"zero": 0})
        assert not refused.value.connection_invalidated
        assert db.run_statement(session, "SELECT pg_backend_pid()", {}) == [(pid,)]

        with pytest.raises(OperationalError) as ended:  # what tasks retry on
            db.run_statement(session, "SELECT pg_terminate_backend(pg_backend_pid())", {})
        assert ended.value.connection_invalidated
        # Not pooled again: the next statement runs on a new session of the server.
        assert db.run_statement(session, "SELECT pg_backend_pid()", {}) != [(pid,)]
