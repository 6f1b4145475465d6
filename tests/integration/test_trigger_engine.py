"""The trigger engine on a real PostgreSQL: candidates by index, exactly-once triggering,
cancel against trigger, expiry, and waiting orders kept away from the claim and reconciler."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from solders.keypair import Keypair
from sqlalchemy import text
from sqlalchemy.orm import Session

from order_engine.chain.pools import PoolIndex
from order_engine.config import Settings
from order_engine.domain.status import OrderStatus
from order_engine.domain.tokens import resolve
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.repositories.order import OrderRepository
from order_engine.routing import Router
from order_engine.services.execution import ExecutionService, Outcome
from order_engine.services.triggers import Evaluation, TriggerService
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain
from tests.support.factories import add_order
from tests.support.statements import statements_sent

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.sent: list[uuid.UUID] = []
        self.lock = threading.Lock()

    def publish(self, payload) -> bool:
        return self.publish_many([payload])

    def publish_many(self, payloads) -> bool:
        with self.lock:
            self.payloads.extend(payloads)
        return True

    def send_many(self, order_ids: list[uuid.UUID]) -> None:
        with self.lock:
            self.sent.extend(order_ids)


@pytest.fixture(scope="module")
def market():
    clock = VirtualClock(REPLAY_START_MS)
    node = Localnet.in_memory(LocalnetSettings(seed=7), clock)
    chain = InProcessChain(node, clock)
    pools = PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)
    now_s = REPLAY_START_MS // 1000
    return Router(pools, now_s=lambda: now_s), chain


def service(engine, market, recorder: Recorder) -> TriggerService:
    router, chain = market
    session = Session(bind=engine, expire_on_commit=False)
    return TriggerService(session, router, chain, recorder, None, send_many=recorder.send_many)  # type: ignore[arg-type]


def add_waiting(engine, limit: str, amount: str = "1", **overrides) -> uuid.UUID:
    fields = {
        "type": "limit",
        "amount_in": Decimal(amount),
        "limit_price": Decimal(limit),
        "trigger_price": Decimal(limit),
        "waiting": True,
        **overrides,
    }
    with Session(bind=engine, expire_on_commit=False) as session, session.begin():
        waiting_for = {"waitingFor": {"limitPrice": limit}}
        return add_order(session, first_event=waiting_for, **fields).id


def row(engine, order_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status, waiting, failure_code, last_seq FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()


def sol_price(market) -> Decimal:
    router, _ = market
    sol, usdc = resolve("SOL"), resolve("USDC")
    decision = router.route(sol, usdc, sol.one)
    return usdc.from_atoms(decision.amount_out)


def test_with_no_order_waiting_an_evaluation_reads_no_pool_and_sends_one_statement(
    engine, clean_tables, market, monkeypatch
):
    router, _ = market
    with Session(bind=engine) as session, session.begin():
        add_order(session, first_event={})  # a market order: it waits for no trigger
    read = []
    monkeypatch.setattr(router.pools, "views", lambda refs: read.append(refs) or [])
    with statements_sent() as sent:
        assert service(engine, market, Recorder()).evaluate() == Evaluation()
    assert read == []
    assert len(sent) == 1
    add_waiting(engine, "1000000")  # far above the market: it keeps waiting
    service(engine, market, Recorder()).evaluate()
    assert len(read) == 1  # now the pools are read


def test_evaluation_triggers_exactly_the_limits_the_quote_meets(engine, clean_tables, market):
    price = sol_price(market)
    below = [
        add_waiting(engine, str((price * Decimal(f)).quantize(Decimal("0.01"))))
        for f in ("0.5", "0.9", "0.999")
    ]
    above = [
        add_waiting(engine, str((price * Decimal(f)).quantize(Decimal("0.01"))))
        for f in ("1.001", "1.1", "3")
    ]
    far = [add_waiting(engine, "1000000") for _ in range(50)]  # never candidates
    recorder = Recorder()
    result = service(engine, market, recorder).evaluate()
    assert set(result.triggered) == set(below)
    assert sorted(recorder.sent) == sorted(below)
    # Only orders at or under the pair's best-price bound were read and quoted.
    assert result.candidates < len(below) + len(above)
    for order_id in above + far:
        assert tuple(row(engine, order_id))[:2] == ("pending", True)
    for order_id in below:
        assert tuple(row(engine, order_id))[:2] == ("routing", False)
    triggered_events = [p for p in recorder.payloads if "triggered" in p["data"]]
    assert {p["orderId"] for p in triggered_events} == {str(i) for i in below}
    # The trigger's quote is the order's routing: its event carries the route decision.
    assert all(p["seq"] == 2 and p["status"] == "routing" for p in triggered_events)
    assert all(p["data"]["decision"]["legs"] for p in triggered_events)


def test_two_concurrent_triggers_dispatch_an_order_once(engine, clean_tables, market):
    orders = [add_waiting(engine, "1") for _ in range(20)]
    recorder = Recorder()
    barrier = threading.Barrier(2)

    def run() -> None:
        trigger = service(engine, market, recorder)
        barrier.wait()
        trigger.trigger([(order_id, {"triggered": {"limitPrice": "1"}}) for order_id in orders])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(recorder.sent) == sorted(orders)  # each once, across both schedulers
    assert all(row(engine, order_id).last_seq == 2 for order_id in orders)
    # A third, late trigger finds nothing to move.
    assert service(engine, market, recorder).trigger([(orders[0], {})]) == []


def test_cancel_and_trigger_of_one_order_one_wins(engine, clean_tables, market):
    recorder = Recorder()
    cancelled_first = add_waiting(engine, "1")
    with Session(bind=engine) as session, session.begin():
        OrderRepository(session).transition(
            cancelled_first,
            OrderStatus.PENDING,
            OrderStatus.CANCELLED,
            event_data={},
            require_no_transaction=True,
        )
    assert service(engine, market, recorder).trigger([(cancelled_first, {})]) == []
    assert recorder.sent == []
    # Triggered first: the cancel still wins before any transaction, and the claim refuses it.
    triggered_first = add_waiting(engine, "1")
    assert service(engine, market, recorder).trigger([(triggered_first, {})]) == [triggered_first]
    with Session(bind=engine) as session, session.begin():
        repo = OrderRepository(session)
        assert (
            repo.transition(
                triggered_first,
                (OrderStatus.PENDING, OrderStatus.ROUTING),
                OrderStatus.CANCELLED,
                event_data={},
                require_no_transaction=True,
            )
            is not None
        )
        assert repo.claim(triggered_first, "worker", 30) is None


def test_waiting_orders_are_neither_claimed_nor_reconciled(engine, clean_tables):
    old = datetime.now(UTC) - timedelta(hours=1)
    order_id = add_waiting(engine, "1", created_at=old, dispatched_at=old)
    with Session(bind=engine) as session, session.begin():
        repo = OrderRepository(session)
        assert repo.claim(order_id, "worker", 30) is None
        assert order_id not in repo.claim_stale(1, 100)


def test_expired_waiting_orders_fail_with_order_expired(engine, clean_tables, market):
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = add_waiting(engine, "1000000", expires_at=past)
    alive = add_waiting(engine, "1000000", expires_at=datetime.now(UTC) + timedelta(hours=1))
    recorder = Recorder()
    result = service(engine, market, recorder).evaluate()
    assert result.expired == 1
    assert tuple(row(engine, expired))[:3] == ("failed", False, "ORDER_EXPIRED")
    assert tuple(row(engine, alive))[:2] == ("pending", True)
    (failed,) = [p for p in recorder.payloads if p["status"] == "failed"]
    assert failed["data"]["error"]["code"] == "ORDER_EXPIRED"
    assert failed["seq"] == 2


def test_a_triggered_order_is_claimed_once_without_a_second_attempt(engine, clean_tables, market):
    order_id = add_waiting(engine, "1")
    assert service(engine, market, Recorder()).trigger([(order_id, {})]) == [order_id]
    with Session(bind=engine) as session, session.begin():
        repo = OrderRepository(session)
        # Triggered and never sent (a crash, Redis emptied): the reconciler finds it ...
        assert order_id in repo.claim_stale(0, 100)
        claimed = repo.claim(order_id, "worker-1", 30)
        assert claimed is not None
        # ... and the claim takes it as routed, counting the trigger's attempt once.
        assert (claimed.status, claimed.attempts, claimed.lease_owner) == ("routing", 1, "worker-1")
        assert repo.claim(order_id, "worker-2", 30) is None
        assert order_id not in repo.claim_stale(0, 100)


def test_a_triggered_order_the_market_left_waits_again(engine, clean_tables, market, test_settings):
    """The trigger routed it, then the executor's own quote falls short of the limit: it goes
    back to waiting, its attempt uncounted and the trigger's route forgotten."""
    router, chain = market
    order_id = add_waiting(engine, "1000000")  # the market never pays this
    recorder = Recorder()
    assert service(engine, market, recorder).trigger([(order_id, {"triggered": {}})]) == [order_id]
    wallet = Keypair.from_seed(hashlib.sha256(b"rearm-test").digest())
    with Session(bind=engine, expire_on_commit=False) as session:
        executor = ExecutionService(
            session, router, chain, wallet, recorder, Settings.from_env(test_settings)
        )
        assert executor.execute(order_id, "worker-1") is Outcome.REARMED
    with engine.connect() as conn:
        order = conn.execute(
            text("SELECT status, waiting, attempts, dex, route FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()
    assert tuple(order) == ("pending", True, 0, None, None)
    statuses = [(p["status"], "rearmed" in p["data"]) for p in recorder.payloads]
    assert statuses == [("routing", False), ("pending", True)]
