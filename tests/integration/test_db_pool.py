"""Database pools are opened at start, so a burst of orders opens no connection."""

import threading

import pytest
from sqlalchemy import event, text

from order_engine.db import make_engine, warm_pool

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
