"""The trigger engine's waiting book, and its evaluation measured in process.

`insert_waiting` writes N waiting limit orders across the listed pairs, each with its first
`pending` event, all with limits 2-12x the pair's best price (so a market that random-walks a
few percent never reaches them), in one SQL statement. The `triggers` phase of `python -m bench`
(`bench.phases.triggers`: the real stack, Celery beat and the worker) uses it, and so does the
in-process measurement below, which isolates the evaluation from the queue:

    python -m bench.triggers --database-url postgresql://... [--orders 10000] [--crossing 1000]

On a scratch database (migrated here; its orders table is emptied first), against an
in-process localnet on virtual time: N waiting limit orders, then evaluations timed (CPU of
this process and wall, which includes PostgreSQL); then `--crossing` more orders whose limits
the market meets, and the time of the evaluations that trigger them (candidates selected, each
quoted, one compare-and-set). Dispatch and publishing are counted but not sent (no broker):
this is the evaluation's own cost, without Celery's per-task work or the RPC round trip.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from order_engine.chain.pools import PoolIndex
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.models import DEFAULT_ACCOUNT_ID
from order_engine.ops import migrate
from order_engine.routing import Router
from order_engine.services.trigger import TriggerService
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain


class Sink:
    def __init__(self) -> None:
        self.sent = 0

    def publish(self, payload: object) -> bool:
        return True

    def publish_many(self, payloads: object) -> bool:
        return True

    def send_many(self, order_ids: list[uuid.UUID]) -> None:
        self.sent += len(order_ids)


# Pair i % P gets the order; its limit steps through 2x, 2.01x, ... 11.99x the pair's best price.
_WAITING_BOOK_SQL = """
WITH pairs AS (
    SELECT * FROM unnest(%(ins)s::text[], %(outs)s::text[], %(prices)s::numeric[])
           WITH ORDINALITY AS p(tin, tout, price, n)
), new_orders AS (
    INSERT INTO orders (
        id, account_id, type, status, token_in, token_out, amount_in, slippage_bps,
        last_seq, attempts, deliveries, created_at, updated_at, dispatched_at,
        limit_price, trigger_price, waiting
    )
    SELECT gen_random_uuid(), %(account)s, 'limit', 'pending', p.tin, p.tout, 1, 50,
           1, 0, 0, now(), now(), now(), l.price, l.price, true
      FROM generate_series(0, %(count)s - 1) AS g(i)
      JOIN pairs AS p ON p.n = mod(g.i, %(pairs)s) + 1
     CROSS JOIN LATERAL (
           SELECT round(p.price * (2 + mod(g.i / %(pairs)s, 1000) / 100.0), 12) AS price
           ) AS l
    RETURNING id, limit_price
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, 1, 'pending', 0,
       jsonb_build_object('type', 'limit',
                          'waitingFor', jsonb_build_object('limitPrice', limit_price::text)),
       now()
  FROM new_orders
"""


def insert_waiting(
    engine: Engine,
    prices: list[tuple[str, str, Decimal]],
    count: int,
    account_id: uuid.UUID | None = None,
) -> None:
    """`count` waiting limit orders spread over `prices` ((tokenIn, tokenOut, best price)),
    each 2-12x beyond its pair's price; then VACUUM (ANALYZE), so the planner sees the book's
    size and no autovacuum of the new rows runs inside a measurement."""
    params: dict[str, Any] = {
        "ins": [tin for tin, _, _ in prices],
        "outs": [tout for _, tout, _ in prices],
        "prices": [price for _, _, price in prices],
        "pairs": len(prices),
        "count": count,
        "account": account_id or DEFAULT_ACCOUNT_ID,
    }
    with engine.begin() as conn:
        conn.exec_driver_sql(_WAITING_BOOK_SQL, params)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM (ANALYZE) orders, order_events"
        )


def best_prices(pools: list[dict[str, Any]]) -> list[tuple[str, str, Decimal]]:
    """Each listed pair, both ways, with its best venue's mid price (tokenOut per tokenIn),
    from the localnet's `localnet_status` pools."""
    best: dict[tuple[str, str], Decimal] = {}
    for pool in pools:
        if not pool.get("mid") or Decimal(pool["mid"]) <= 0:
            continue
        mid = Decimal(pool["mid"])
        x, y = pool["tokenX"], pool["tokenY"]
        for pair, price in (((x, y), mid), ((y, x), 1 / mid)):
            best[pair] = max(price, best.get(pair, Decimal(0)))
    return [(tin, tout, price) for (tin, tout), price in sorted(best.items())]


def insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (id, type, status, token_in, token_out, amount_in, "
                "slippage_bps, last_seq, attempts, deliveries, limit_price, trigger_price, "
                "waiting, created_at, updated_at) VALUES (:id, 'limit', 'pending', :tin, :tout, "
                ":amount, 50, 1, 0, 0, :limit, :limit, true, now(), now())"
            ),
            rows,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--crossing", type=int, default=1_000)
    parser.add_argument("--evaluations", type=int, default=50)
    args = parser.parse_args()

    migrate.upgrade(args.database_url)
    engine = create_engine(args.database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE orders, order_events CASCADE"))

    clock = VirtualClock(REPLAY_START_MS)
    node = Localnet.in_memory(LocalnetSettings(seed=7), clock)
    chain = InProcessChain(node, clock)
    pools = PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)
    now_s = REPLAY_START_MS // 1000
    router = Router(pools, now_s=lambda: now_s)
    sink = Sink()
    service = TriggerService(
        Session(bind=engine, expire_on_commit=False),
        router,
        chain,
        sink,
        None,
        send_many=sink.send_many,  # type: ignore[arg-type]
    )
    bounds, _ = service.pair_bounds()
    print(f"{len(bounds)} listed pair directions")
    insert_waiting(engine, [(b.token_in, b.token_out, b.best_price) for b in bounds], args.orders)

    cpu, wall = [], []
    for _ in range(args.evaluations):
        clock.advance_ms(400)  # a new slot: pools re-read, the market drifts
        c0, w0 = time.process_time(), time.perf_counter()
        result = service.evaluate()
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
        assert not result.triggered, result
    print(
        f"{args.orders} waiting, none crossing: per evaluation CPU median "
        f"{statistics.median(cpu):.2f} ms (p95 {sorted(cpu)[int(len(cpu) * 0.95) - 1]:.2f}), "
        f"wall median {statistics.median(wall):.2f} ms; candidates {result.candidates}; "
        f"at one evaluation per 0.5 s: {statistics.median(cpu) / 5:.2f} % of one core"
    )

    c0 = time.process_time()
    for _ in range(args.evaluations):
        clock.advance_ms(400)
        service.pair_bounds()
    bounds_ms = (time.process_time() - c0) * 1000 / args.evaluations
    print(f"of which the pools' read and the pair bounds (in-process localnet): {bounds_ms:.2f} ms")

    sol_usdc = next(b for b in bounds if (b.token_in, b.token_out) == ("SOL", "USDC"))
    crossing = [
        {
            "id": uuid.uuid4(),
            "tin": "SOL",
            "tout": "USDC",
            "amount": Decimal("0.1"),
            "limit": (sol_usdc.best_price * Decimal("0.9")).quantize(Decimal("1e-6")),
        }
        for _ in range(args.crossing)
    ]
    insert(engine, crossing)
    started = datetime.now(UTC)
    c0, w0 = time.process_time(), time.perf_counter()
    result = service.evaluate()
    total = len(result.triggered)
    while total < args.crossing and (time.perf_counter() - w0) < 60:
        total += len(service.evaluate().triggered)
    print(
        f"{args.crossing} crossing at once: all triggered (and dispatched) in "
        f"{(time.perf_counter() - w0) * 1000:.0f} ms wall, "
        f"{(time.process_time() - c0) * 1000:.0f} ms CPU ({total} triggered, "
        f"{sink.sent} sends) since {started:%H:%M:%S}"
    )
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE orders, order_events CASCADE"))


if __name__ == "__main__":
    main()
