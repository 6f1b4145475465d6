"""One SQLAlchemy engine per process, one session per app context.

The engine is created lazily on first use and held by `process.PROCESS`, which drops it after
fork (disposed without closing the parent's connections), so a forked process (gunicorn
worker, Celery child) never uses a parent's pooled connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from flask import Flask, current_app, g
from gevent.monkey import get_original
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from order_engine.infra.process import PROCESS

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# The operating system's select(), even in a process gevent has patched: asked with a zero
# timeout it never blocks, while gevent's cooperative one switches to the hub on every call (a
# greenlet switch and an I/O watcher per pool checkout: 3 % of the worker's CPU by profile).
_select_now = get_original("select", "select")

# In a forked child the parent's pooled connections are dropped, never closed: closing would
# end the parent's sessions on the server (SQLAlchemy's pooling docs, "using with fork").
PROCESS.on_fork("engine", lambda engine: engine.dispose(close=False))


# The API's sessions (set in wsgi.py): a request never waits on PostgreSQL without bound — a
# stuck statement or a lock held by someone else becomes a 503 with Retry-After.
API_SESSION_TIMEOUTS_MS = {
    "statement_timeout": 5000,
    "lock_timeout": 2000,
    "idle_in_transaction_session_timeout": 10000,
}
# The workers' sessions (set in workers/celery_app.py). A worker cut off from PostgreSQL in the
# middle of a transaction (a network partition, a frozen host) leaves its server session idle in
# that transaction, holding the row locks of the orders it was moving: no other worker could
# take those orders over, and the reconciler's SKIP LOCKED would pass them by, until the link
# came back or TCP gave up hours later. The server ends such a session after 10 s, well within
# the order's lease, so a take-over after the lease finds the rows free. A worker's
# transactions are short (no chain call runs inside one), so this never ends a healthy one.
WORKER_SESSION_TIMEOUTS_MS = {"idle_in_transaction_session_timeout": 10000}


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 20,
    max_overflow: int = 0,
    session_timeouts_ms: dict[str, int] | None = None,
    pre_ping: bool = False,
) -> Engine:
    """An engine tuned for short transactions from many threads or greenlets.

    Every process of the stack has its own pool, and together they must stay under the
    server's max_connections (100 by default): 2 API processes + 1 worker at 20 is 60. No
    overflow by default: connections opened for a burst and closed after it cost PostgreSQL a
    backend fork each (a third of its CPU in an earlier benchmark), while a transaction that
    waits a moment for a pooled connection costs nothing.
    Waits are bounded: connecting (`connect_timeout`), checking a connection out of a full pool
    (`pool_timeout`), and, with `session_timeouts_ms`, statements and lock waits on the server.
    """
    connect_args: dict[str, object] = {"connect_timeout": 5, "application_name": "order-engine"}
    if session_timeouts_ms:
        connect_args["options"] = " ".join(
            f"-c {name}={value}" for name, value in session_timeouts_ms.items()
        )
    engine = create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        connect_args=connect_args,
    )
    event.listen(engine, "checkout", _refuse_if_closed_by_server)
    if pre_ping:
        event.listen(engine, "checkin", _note_checkin)
        event.listen(engine, "checkout", _ping_if_idle)
    return engine


# A connection back in use within this long is not pinged at checkout: HikariCP's
# `aliveBypassWindowMs` (500 ms by default) makes the same trade. Under load every pooled
# connection comes round again well within it, so the pings (a round trip, and a transaction
# on the server, each: two per order before) are only paid after a quiet spell, when a
# restarted or terminated server is most likely to have ended the session anyway.
PING_AFTER_IDLE_S = 0.5


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """`pool_pre_ping` for a connection idle in the pool longer than PING_AFTER_IDLE_S (a new
    connection was just opened: no ping). Raising DisconnectionError makes the pool take
    another connection, as a failed pre-ping does."""
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
        return
    autocommit = dbapi_connection.autocommit
    try:
        dbapi_connection.autocommit = True  # an empty query, outside any transaction
        dbapi_connection.execute(";")
    except psycopg.Error as exc:
        raise DisconnectionError(f"the connection failed its ping: {exc}") from exc
    finally:
        with suppress(psycopg.Error):
            dbapi_connection.autocommit = autocommit


def _refuse_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A restarted or terminating PostgreSQL leaves dead connections in the pool; they are
    replaced at checkout instead of failing the request.

    Without a round trip: an idle connection's socket has nothing to read unless the server
    has written to it, and a server that ends a session writes its FATAL message and closes
    the socket, so a readable socket means a dead session. (`pool_pre_ping` sent a `SELECT 1`
    for every checkout: about seven per order, 5 % of the worker's CPU and as many statements
    on PostgreSQL.) Raising DisconnectionError makes the pool take another connection.

    A session ended a moment ago may not have said so yet (the FATAL is still on its way), so
    a statement can still meet a dead connection: the worker's step then fails and its task
    retries it (the order's state is in its row, guarded by its lease). The API, which answers
    clients, also pings a connection that sat idle in the pool (`pre_ping`, DB_PRE_PING in
    wsgi.py; `_ping_if_idle`).
    """
    if dbapi_connection.closed:
        raise DisconnectionError("the connection is closed")
    try:
        readable, _, _ = _select_now([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError) as exc:
        raise DisconnectionError(f"the connection's socket is unusable: {exc}") from exc
    if readable:
        raise DisconnectionError("the server ended this session while it was idle in the pool")


def get_engine(app: Flask | None = None) -> Engine:
    app = app or current_app
    override = app.extensions.get("order_engine.engine")
    if override is not None:
        return override
    settings = app.config["SETTINGS"]
    return PROCESS.get(
        "engine",
        settings.database_url,
        lambda: make_engine(
            settings.database_url,
            echo=settings.sql_echo,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            session_timeouts_ms=app.config.get("DB_SESSION_TIMEOUTS_MS"),
            pre_ping=bool(app.config.get("DB_PRE_PING", False)),
        ),
    )


def warm_pool(engine: Engine, size: int) -> int:
    """Open the pool's connections now, at start, rather than during the first burst.

    A connection opened under load costs PostgreSQL a backend fork in the middle of it, and the
    pool keeps what it opened (no overflow), so one fill at start is the only one. Holds them
    all at once (each checkout then opens a new one) and hands them back. Returns how many are
    pooled; a database that is down is not an error here (the first request will say so).
    """
    held = []
    try:
        for _ in range(size):
            held.append(engine.raw_connection())
    except Exception as exc:  # noqa: BLE001 - start-up must not fail on a slow database
        log.warning("could not open all %d pooled connections at start: %s", size, exc)
    finally:
        for connection in held:
            connection.close()  # back to the pool, still open
    return len(held)


def warm_app_pool(app: Flask) -> int:
    settings = app.config["SETTINGS"]
    return warm_pool(get_engine(app), settings.db_pool_size)


def get_session() -> Session:
    """The session of the current app context (request or task), created on first use."""
    if "db_session" not in g:
        factory = current_app.extensions.get("order_engine.session_factory")
        if factory is None:
            factory = _session_factory(get_engine())
        g.db_session = factory()
    return g.db_session


def _session_factory(engine: Engine) -> sessionmaker[Session]:
    # Built once per engine: a sessionmaker per request showed up in intake profiles.
    return PROCESS.get(
        "session_factory", engine, lambda: sessionmaker(bind=engine, expire_on_commit=False)
    )


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)


@contextmanager
def unit_of_work(session: Session) -> Iterator[None]:
    """A unit of work of one statement on `session` (or of statements each atomic alone, as a
    claim and the take-over tried after it). One statement is atomic by itself in PostgreSQL,
    so it runs on an autocommit connection: psycopg sends BEGIN and COMMIT as round trips of
    their own, so this saves two of every three (the worker's claim, the stream's history
    read). Statements that must commit together use `session.begin()`. A session bound to a
    connection already in a transaction (the tests' rolled-back sessions) keeps it.
    """
    with session.begin():
        if isinstance(session.get_bind(), Engine):
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield


def run_statement(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one prebuilt statement (psycopg's `%(name)s` parameters) and return its rows, as a
    unit of work by itself when the session has no transaction, else as part of it.

    Which of the two depends on the session's state, so only statements for which both mean
    the same to their caller use this: a read (the trigger engine's look for waiting orders).
    Writes do not: the executor's transitions commit through `TransitionCommitter` and join a
    unit of work through `OrderRepository.apply`, intake's insert through `IntakeCommitter`
    and `IntakeRepository`, two names for the two.

    Outside a transaction, on a session bound to an engine, the statement goes through
    `commit_statement`; on a session bound to a connection (the tests' rolled-back sessions)
    it takes the session's way.
    """
    engine = standalone_engine(session)
    if engine is not None:
        return commit_statement(engine, sql, params)
    if session.in_transaction():
        return session_statement(session, sql, params)
    with unit_of_work(session):
        return session_statement(session, sql, params)


def standalone_engine(session: Session) -> Engine | None:
    """The engine a statement of `session` would run on as a unit of work by itself (see
    `run_statement`): None inside the session's transaction, or for a session bound to a
    connection."""
    if session.in_transaction():
        return None
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else None


def commit_statement(engine: Engine, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement as a unit of work of its own, committed when it returns: on a pooled
    connection in autocommit (one statement is atomic in PostgreSQL), through psycopg directly,
    because SQLAlchemy's session, connection and result layers cost more client CPU than the
    statement (measured under gevent: 640 µs per one-statement unit of work through the
    session, 290 µs this way).

    It fails as it would through SQLAlchemy: psycopg's errors come wrapped in SQLAlchemy's
    (OperationalError and the like, which tasks retry on), and a connection the failure broke
    is invalidated rather than pooled again."""
    pooled = engine.raw_connection()  # checked out with the pool's checks (db.make_engine)
    connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
    try:
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description is not None else []
        finally:
            if not connection.closed:
                # The pool hands it to sessions next, which expect transactions.
                connection.autocommit = False
    except psycopg.Error as exc:
        broken = engine.dialect.is_disconnect(exc, connection, None)  # type: ignore[arg-type]
        if broken:
            pooled.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            psycopg.Error,
            connection_invalidated=broken,
            dialect=engine.dialect,
        ) from exc
    finally:
        pooled.close()  # back to the pool (or discarded, if invalidated)


def together_or_each_alone(
    rows: Sequence[T], together: Callable[[], list[R]], alone: Callable[[T], R]
) -> list[R | BaseException]:
    """Group commit's fallback: `together()` runs one statement for every row and returns each
    row's result. If it fails on some row's data (a constraint), it changed nothing, and each
    row runs `alone` instead, so that only the rows at fault get their error; a failure that
    broke the connection goes to every row, as it would have to each alone. A batch of one
    row runs `alone`, the statement without arrays."""
    if len(rows) == 1:
        return [alone(rows[0])]
    try:
        return list(together())
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
    outcomes: list[R | BaseException] = []
    for row in rows:
        try:
            outcomes.append(alone(row))
        except DBAPIError as failed:
            outcomes.append(failed)
    return outcomes


def session_statement(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one prebuilt statement on the session's connection, as part of its unit of work
    (begun now if none is): the caller commits."""
    return [tuple(row) for row in session.connection().exec_driver_sql(sql, params)]
