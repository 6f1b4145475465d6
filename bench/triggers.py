"""Measure the trigger engine's evaluation cost with many waiting limit orders.

    python -m bench.triggers --database-url postgresql://... [--orders 10000] [--crossing 1000]

On a scratch database (migrated here; its orders table is emptied first), against an
in-process localnet on virtual time: N waiting limit orders across the listed pairs, all with
limits beyond the market, then evaluations timed (CPU of this process and wall, which includes
PostgreSQL); then `--crossing` more orders whose limits the market meets, and the time of the
one evaluation that triggers them (candidates selected, each quoted, one compare-and-set).
Dispatch and publishing are counted but not sent (no broker): this is the evaluation's cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from order_engine import migrate
from order_engine.chain.pools import PoolIndex
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.localnet.replay import REPLAY_START_MS, InProcessChain
from order_engine.routing import Router
from order_engine.services.trigger import TriggerService


class Sink:
    def __init__(self) -> None:
        self.sent = 0

    def publish(self, payload: object) -> bool:
        return True

    def publish_many(self, payloads: object) -> bool:
        return True

    def send(self, order_id: uuid.UUID) -> None:
        self.sent += 1


def insert(engine, rows: list[dict]) -> None:
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
        send=sink.send,  # type: ignore[arg-type]
    )
    bounds, _ = service.pair_bounds()
    print(f"{len(bounds)} listed pair directions")
    rows = []
    for i in range(args.orders):
        pair = bounds[i % len(bounds)]
        factor = Decimal(2) + Decimal(i % 1000) / 100  # 2x–12x the best price: never crossed
        limit = (pair.best_price * factor).quantize(Decimal("1e-12"))
        rows.append(
            {
                "id": uuid.uuid4(),
                "tin": pair.token_in,
                "tout": pair.token_out,
                "amount": Decimal("1"),
                "limit": limit,
            }
        )
    insert(engine, rows)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE orders"))

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
