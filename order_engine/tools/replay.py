"""Replay a batch of orders through the real execution service, in process, on virtual time.

A tool above both the engine and the simulator: the localnet runs in this process on a
`VirtualClock` and the engine reaches it through `tools.in_process.InProcessChain`, its ordinary
JSON-RPC chain client with the HTTP hop replaced by a direct call (same requests, same
answers). No broker, no sleeping: orders run one after another (retries inline), and order ids
and wallet derive from the seed, so the same seed and batch give the same event streams byte
for byte. Used by the determinism test and by the routing report (`make venue-report`).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from solders.keypair import Keypair
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from order_engine.chain.pools import PoolIndex
from order_engine.config import Settings
from order_engine.live.events import event_payload
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.models import Order, OrderStatus
from order_engine.repositories.order import OrderRepository
from order_engine.routing import Router
from order_engine.services.execution import ExecutionService, Outcome, RetryLater
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain


@dataclass(frozen=True)
class ReplayOrder:
    token_in: str
    token_out: str
    amount: Decimal
    slippage_bps: int = 50


class _NullPublisher:
    def publish(self, payload: dict[str, Any]) -> bool:
        return True

    def publish_many(self, payloads: list[dict[str, Any]]) -> bool:
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
    engine: Engine,
    settings: Settings,
    localnet_settings: LocalnetSettings,
    orders: list[ReplayOrder],
    gap_ms: int = 1_500,
) -> list[list[dict[str, Any]]]:
    """Execute `orders` in sequence; return each order's events (as published)."""
    clock = VirtualClock(REPLAY_START_MS)
    node = Localnet.in_memory(localnet_settings, clock)
    chain = InProcessChain(node, clock)
    pools = PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)
    router = Router(pools, now_s=lambda: clock.now_ms() // 1000, clock_ms=clock.now_ms)
    wallet = Keypair.from_seed(
        hashlib.sha256(f"replay-wallet:{settings.dex_seed}".encode()).digest()
    )
    streams = []
    with Session(engine, expire_on_commit=False) as session:
        service = ExecutionService(
            session,
            router,
            chain,
            wallet,
            _NullPublisher(),
            settings,
            now=lambda: datetime.fromtimestamp(clock.now_ms() / 1000, UTC),
        )
        for index, spec in enumerate(orders):
            order_id = uuid.uuid5(uuid.NAMESPACE_URL, f"replay:{settings.dex_seed}:{index}")
            _insert(session, order_id, spec, clock)
            _run_to_end(service, order_id, clock)
            with session.begin():
                events = OrderRepository(session).events(order_id)
                streams.append([event_payload(e) for e in events])
            clock.advance_ms(gap_ms)
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
            clock.advance_ms(int(later.countdown_s * 1000))
            continue
        if outcome in {Outcome.CONFIRMED, Outcome.FAILED}:
            return
