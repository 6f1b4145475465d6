"""What the process sends to PostgreSQL, observed at psycopg: every statement from any engine,
session or pooled connection, whether it went through SQLAlchemy or not (db.run_statement)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

# What the tests' rolled-back sessions add around each unit of work, and the pool's ping.
BOOKKEEPING = ("SAVEPOINT", "RELEASE", "ROLLBACK TO", ";")


@dataclass(frozen=True)
class Sent:
    sql: str
    autocommit: bool  # on an autocommit connection: psycopg sent no BEGIN and no COMMIT
    idle_after: bool  # and the server had no transaction open once it had run


@contextmanager
def statements_sent() -> Iterator[list[Sent]]:
    """The statements sent meanwhile (the tests' SAVEPOINT bookkeeping and pings left out);
    psycopg sends BEGIN and COMMIT itself, outside `Cursor.execute`, so they are not here."""
    sent: list[Sent] = []
    execute = psycopg.Cursor.execute

    def noted(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return execute(cursor, query, *args, **kwargs)
        finally:
            sql = query if isinstance(query, str) else str(query)
            if not sql.startswith(BOOKKEEPING):
                connection = cursor.connection
                idle = connection.info.transaction_status == TransactionStatus.IDLE
                sent.append(Sent(sql, connection.autocommit, idle))

    psycopg.Cursor.execute = noted  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
