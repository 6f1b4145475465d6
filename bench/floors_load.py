"""Loops run in a child process of their own (`bench.loadgen.Child`), each of one operation.

A floor (`python -m bench.floors`) sets up, sets `ready`, waits for `go` (the parent reads the
servers' counters in between), runs its operation `n` times and reports the CPU its own process
used for the loop.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil

from bench import FLOOR_TASK
from bench.web import ORDER_ROW as BASELINE_ROW

# The row of an order as intake writes it (the baseline endpoint's values and a client id).
ORDER_ROW = {**BASELINE_ROW, "client_order_id": "floor-0000000000"}
COLUMNS = ", ".join(["id", *ORDER_ROW])
PLACEHOLDERS = ", ".join(["%s"] * (len(ORDER_ROW) + 1))
INSERT_SQL = f"INSERT INTO orders ({COLUMNS}) VALUES ({PLACEHOLDERS})"  # noqa: S608 - fixed
UPDATE_SQL = (
    "UPDATE orders SET status = 'routing', last_seq = last_seq + 1, updated_at = now() "
    "WHERE id = %s RETURNING last_seq"
)
SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


def _cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _loop(n: int, ready: Any, go: Any, operation: Callable[[int], object]) -> dict[str, Any]:
    ready.set()
    go.wait(120)
    cpu, started = _cpu_s(), time.monotonic()
    for index in range(n):
        operation(index)
    return {
        "n": n,
        "client_cpu_s": round(_cpu_s() - cpu, 4),
        "wall_s": round(time.monotonic() - started, 3),
    }


def celery_sends(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """`n` `bench.floor` tasks through the project's direct Redis sender (dispatch.py)."""
    os.environ.update(spec["env"])
    from order_engine.app import create_app
    from order_engine.tasking.dispatch import task_sender

    sender = task_sender(create_app().extensions["celery"])
    if sender is None:
        return {"error": "the broker is not one the direct sender serves"}
    extra = spec.get("kwargs", {})
    return _loop(
        spec["n"],
        ready,
        go,
        lambda _i: sender.send(FLOOR_TASK, {"order_id": str(uuid.uuid4()), **extra}),
    )


def pg_statements(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """INSERT + COMMIT of an order row, or an autocommit UPDATE … RETURNING of one, through
    psycopg directly (`driver` "psycopg") or SQLAlchemy Core on an engine built as a worker's."""
    import psycopg

    os.environ.update(spec["env"])
    ids = [uuid.uuid4() for _ in range(spec["n"])]
    rows = [(i, *ORDER_ROW.values()) for i in ids]
    if spec["statement"] == "update":
        with psycopg.connect(spec["libpq_url"]) as conn, conn.cursor() as cursor:
            cursor.executemany(INSERT_SQL, rows)
    if spec["driver"] == "sqlalchemy":
        operation = _sqlalchemy_statement(spec["database_url"], spec["statement"], ids)
    elif spec["statement"] == "insert":
        conn = psycopg.connect(spec["libpq_url"])
        operation = lambda i: (conn.execute(INSERT_SQL, rows[i]), conn.commit())  # noqa: E731
    else:
        conn = psycopg.connect(spec["libpq_url"], autocommit=True)
        operation = lambda i: conn.execute(UPDATE_SQL, (ids[i],)).fetchone()  # noqa: E731
    return _loop(spec["n"], ready, go, operation)


def _sqlalchemy_statement(url: str, statement: str, ids: list[uuid.UUID]) -> Callable[[int], Any]:
    from sqlalchemy import Table, insert, update

    from order_engine.config import Settings
    from order_engine.infra.db import WORKER_SESSION_TIMEOUTS_MS, make_engine, warm_pool
    from order_engine.models import Order

    settings = Settings.from_env()
    engine = make_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        session_timeouts_ms=WORKER_SESSION_TIMEOUTS_MS,
    )
    warm_pool(engine, 1)
    orders: Table = Order.__table__  # type: ignore[assignment]

    def run(i: int) -> None:
        with engine.begin() as conn:
            if statement == "insert":
                conn.execute(insert(orders).values(id=ids[i], **ORDER_ROW))
                return
            bump = {"status": "routing", "last_seq": orders.c.last_seq + 1}
            where = orders.c.id == ids[i]
            conn.execute(
                update(orders).where(where).values(bump).returning(orders.c.last_seq)
            ).one()

    return run


def redis_calls(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """EVALSHA of a one-SET script, or PUBLISH to `channel` (the parent subscribes to it),
    through a client built as the engine's (order_engine.infra.redis_client)."""
    os.environ.update(spec["env"])
    from order_engine.config import Settings
    from order_engine.infra.redis_client import make_redis

    client = make_redis(Settings.from_env())
    client.ping()  # connected (and its connection set up) before the loop
    if spec["command"] == "evalsha":
        script = client.register_script(SCRIPT)
        script(keys=["floor:key"], args=["x"])  # loaded once, so the loop is EVALSHA alone
        return _loop(spec["n"], ready, go, lambda i: script(keys=["floor:key"], args=[i]))
    payload = '{"orderId": "floor", "seq": 1, "status": "pending", "data": {}}'
    return _loop(spec["n"], ready, go, lambda _i: client.publish(spec["channel"], payload))


def rpc_calls(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """getSignatureStatuses of one signature through the project's chain client."""
    from solders.keypair import Keypair

    from order_engine.chain.client import RpcChain

    chain = RpcChain(spec["url"])
    signature = str(Keypair().sign_message(b"floor"))
    chain.signature_statuses([signature])  # the keep-alive connection, opened
    return _loop(spec["n"], ready, go, lambda _i: chain.signature_statuses([signature]))


def websockets(spec: dict[str, Any]) -> dict[str, Any]:
    """`n` WebSockets to `path`, `connections` at a time: each opens, reads, is closed."""
    return asyncio.run(_websockets(spec))


async def _websockets(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.wsclient import Subscriber

    deadline = time.monotonic() + spec["deadline_s"]
    sockets, handshakes = (asyncio.Semaphore(spec["connections"]) for _ in range(2))

    async def one(index: int) -> dict[str, Any]:
        async with sockets:
            subscriber = Subscriber(spec["port"], f"floor-{index}", target=spec["path"])
            await subscriber.run(handshakes, deadline)
            return subscriber.record

    records = await asyncio.gather(*(one(i) for i in range(spec["n"])))
    done = [r for r in records if r["closeCode"] == 1000 and len(r["events"]) == 1]
    errors = [r["error"] for r in records if r["error"]]
    return {"n": spec["n"], "completed": len(done), "errors": errors[:5]}
