"""Replay a batch of orders through the real execution service, in process, on virtual time.

No broker, no sleeping: the venues and the chain run on a `VirtualClock`, orders are executed one
after another (retries inline), and order ids derive from the seed, so the same seed and the
same batch give the same event stream byte for byte. Used by the determinism test and by the
routing report (`make venue-report`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from order_engine.config import Settings
from order_engine.events import event_payload
from order_engine.models import Order, OrderStatus
from order_engine.repositories.order import OrderRepository
from order_engine.services.execution import ExecutionService, RetryLater, build_venues_and_chain
from order_engine.venues.clock import VirtualClock

REPLAY_START_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z: far from any wall-clock pool data


@dataclass(frozen=True)
class ReplayOrder:
    token_in: str
    token_out: str
    amount: Decimal
    slippage_bps: int = 50


class _NullPublisher:
    def publish(self, payload: dict[str, Any]) -> bool:
        return True


def mixed_orders(seed: int, count: int) -> Iterator[ReplayOrder]:
    """Orders of mixed pairs and sizes, from dust to whale, seeded."""
    rng = random.Random(f"{seed}:replay-orders")
    menu = [
        (
            "SOL",
            "USDC",
            [Decimal("0.05"), Decimal("1"), Decimal("25"), Decimal("400"), Decimal("3000")],
        ),
        (
            "USDC",
            "SOL",
            [Decimal("10"), Decimal("250"), Decimal("5000"), Decimal("60000"), Decimal("400000")],
        ),
        ("SOL", "USDT", [Decimal("0.5"), Decimal("40"), Decimal("900")]),
        ("USDC", "USDT", [Decimal("100"), Decimal("20000"), Decimal("500000")]),
        ("JUP", "USDC", [Decimal("50"), Decimal("5000"), Decimal("150000")]),
        ("BONK", "SOL", [Decimal("1000000"), Decimal("500000000"), Decimal("10000000000")]),
        ("RAY", "SOL", [Decimal("10"), Decimal("2000"), Decimal("40000")]),
    ]
    for _ in range(count):
        token_in, token_out, sizes = rng.choice(menu)
        amount = rng.choice(sizes) * Decimal(rng.randint(50, 150)) / 100
        yield ReplayOrder(token_in, token_out, amount.quantize(Decimal("0.000001")))


def replay(
    engine: Engine, settings: Settings, orders: list[ReplayOrder], gap_ms: int = 1_500
) -> list[list[dict[str, Any]]]:
    """Execute `orders` in sequence; return each order's events (as published)."""
    clock = VirtualClock(REPLAY_START_MS)
    router, chain = build_venues_and_chain(settings, engine, None, clock, concurrent=False)
    streams = []
    with Session(engine, expire_on_commit=False) as session:
        service = ExecutionService(session, router, chain, _NullPublisher(), settings)
        for index, spec in enumerate(orders):
            order_id = uuid.uuid5(uuid.NAMESPACE_URL, f"replay:{settings.dex_seed}:{index}")
            _insert(session, order_id, spec, clock)
            _run_to_end(service, order_id, clock)
            with session.begin():
                events = OrderRepository(session).events(order_id)
                streams.append([event_payload(e) for e in events])
            clock.sleep_ms(gap_ms)
    return streams


def _insert(session: Session, order_id: uuid.UUID, spec: ReplayOrder, clock: VirtualClock) -> None:
    now = datetime.fromtimestamp(clock.now_ms() / 1000, UTC)
    order = Order(
        id=order_id,
        type="market",
        status=OrderStatus.PENDING.value,
        token_in=spec.token_in,
        token_out=spec.token_out,
        amount_in=spec.amount,
        slippage_bps=spec.slippage_bps,
        last_seq=0,
        attempts=0,
        deliveries=0,
        created_at=now,
        updated_at=now,
    )
    with session.begin():
        repo = OrderRepository(session)
        repo.add(order)
        repo.append_first_event(order, {"replay": True})


def _run_to_end(service: ExecutionService, order_id: uuid.UUID, clock: VirtualClock) -> None:
    for _ in range(service.settings.order_max_deliveries + 1):
        try:
            outcome = service.execute(order_id, f"replay:{order_id}")
        except RetryLater as later:
            clock.sleep_ms(int(later.countdown_s * 1000))
            continue
        if outcome in {"confirmed", "failed"}:
            return
