"""The trigger engine's stops, OCO brackets and trailing stops on a real PostgreSQL, against the
in-process localnet: candidates by index, the leg a bracket takes, shared peaks that cost no
write while the quote does not rise, activation, and exactly-once triggering of a bracket."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from order_engine.chain.pools import PoolIndex
from order_engine.domain.tokens import resolve
from order_engine.domain.triggers import class_amount, level_key, size_class
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.routing import Router
from order_engine.services.triggers import TriggerService
from order_engine.services.triggers.market import class_price
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain
from tests.integration.test_trigger_engine import Recorder
from tests.support.factories import add_order

pytestmark = pytest.mark.integration

SOL, USDC = resolve("SOL"), resolve("USDC")
AMOUNT = Decimal("1.5")
K = size_class(SOL.to_atoms(AMOUNT))


class Market:
    """The in-process localnet, its router, and a clock to move it by."""

    def __init__(self) -> None:
        self.clock = VirtualClock(REPLAY_START_MS)
        self.node = Localnet.in_memory(LocalnetSettings(seed=7), self.clock)
        self.chain = InProcessChain(self.node, self.clock)
        pools = PoolIndex(self.chain, clock=lambda: self.clock.now_ms() / 1000)
        self.router = Router(pools, now_s=lambda: self.clock.now_ms() // 1000)

    def move(self, price: Decimal) -> None:
        """SOL's reference price in USDC becomes `price`; the next evaluation reads new pools."""
        self.node.cluster.admin.move("SOL", "USDC", price)
        self.clock.advance_ms(500)

    def own_price(self, amount: Decimal = AMOUNT) -> Decimal:
        """The engine's net quote for `amount` SOL, in USDC per SOL."""
        decision = self.router.route(SOL, USDC, SOL.to_atoms(amount))
        return USDC.from_atoms(decision.amount_out) / amount

    def class_price(self) -> Decimal:
        price = class_price(self.router, SOL, USDC, K)
        assert price is not None
        return Decimal(price.numerator) / Decimal(price.denominator)


@pytest.fixture
def market():
    return Market()


def service(engine, market: Market, recorder: Recorder) -> TriggerService:
    session = Session(bind=engine, expire_on_commit=False)
    return TriggerService(  # type: ignore[arg-type]
        session, market.router, market.chain, recorder, None, send_many=recorder.send_many
    )


def add(engine, order_type: str, **fields) -> uuid.UUID:
    values = {
        "type": order_type,
        "amount_in": AMOUNT,
        "slippage_bps": 300,
        "waiting": True,
        "size_class": K,
        **fields,
    }
    with Session(bind=engine, expire_on_commit=False) as session, session.begin():
        return add_order(session, first_event={"waitingFor": {}}, **values).id


def stop(engine, price: Decimal) -> uuid.UUID:
    return add(engine, "stop", stop_price=price.quantize(Decimal("0.000001")))


def bracket(engine, take: Decimal, loss: Decimal) -> uuid.UUID:
    take = take.quantize(Decimal("0.000001"))
    fields = {"limit_price": take, "trigger_price": take}
    return add(engine, "oco", stop_price=loss.quantize(Decimal("0.000001")), **fields)


def trailing(engine, peak: Decimal, trail_bps: int, started: datetime | None = None) -> uuid.UUID:
    peak = peak.quantize(Decimal("0.000001"))
    fields = {"trail_bps": trail_bps, "peak_price": peak, "stop_price": level_key(peak, trail_bps)}
    return add(engine, "trailing_stop", trail_since=started or datetime.now(UTC), **fields)


def row(engine, order_id):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT status, waiting, trigger_leg, trail_since, peak_price, stop_price "
                "FROM orders WHERE id = :id"
            ),
            {"id": order_id},
        ).one()


def marks(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT since, peak FROM trailing_peaks ORDER BY since")).all()


def triggered_data(recorder: Recorder) -> dict[str, dict]:
    return {p["orderId"]: p["data"] for p in recorder.payloads if p["status"] == "routing"}


def test_stops_fire_when_their_quote_falls_to_them_and_those_far_below_are_never_read(
    engine, clean_tables, market
):
    price = market.own_price()
    above = [stop(engine, price * Decimal(f)) for f in ("1.001", "1.05", "2")]
    near = [stop(engine, price * Decimal(f)) for f in ("0.999", "0.95")]
    far = [stop(engine, price * Decimal("0.5")) for _ in range(50)]
    recorder = Recorder()
    result = service(engine, market, recorder).evaluate()
    assert set(result.triggered) == set(above)
    assert sorted(recorder.sent) == sorted(above)
    # Only the stops at or above their class's floor were read: not the 50 far below.
    assert result.candidates < len(above) + len(near) + 5
    for order_id in near + far:
        assert tuple(row(engine, order_id))[:2] == ("pending", True)
    data = triggered_data(recorder)[str(above[0])]
    assert data["triggered"] == {"triggerPrice": stop_price(engine, above[0])}
    assert data["decision"]["legs"]


def stop_price(engine, order_id) -> str:
    return format(row(engine, order_id).stop_price.normalize(), "f")


def test_a_bracket_takes_the_leg_its_quote_meets_and_the_stop_when_both_are(
    engine, clean_tables, market
):
    price = market.own_price()
    take = bracket(engine, price * Decimal("0.9"), price * Decimal("0.5"))
    loss = bracket(engine, price * Decimal("2"), price * Decimal("1.1"))
    both = bracket(engine, price * Decimal("0.9"), price * Decimal("1.1"))  # intake refuses it
    neither = bracket(engine, price * Decimal("2"), price * Decimal("0.5"))
    recorder = Recorder()
    result = service(engine, market, recorder).evaluate()
    assert set(result.triggered) == {take, loss, both}
    legs = {order_id: row(engine, order_id).trigger_leg for order_id in (take, loss, both)}
    assert legs == {take: "takeProfit", loss: "stopLoss", both: "stopLoss"}
    data = triggered_data(recorder)
    assert data[str(take)]["leg"] == "takeProfit"
    assert "limitPrice" in data[str(take)]["triggered"]["takeProfit"]
    assert data[str(loss)]["leg"] == "stopLoss"
    assert data[str(both)]["leg"] == "stopLoss"
    assert tuple(row(engine, neither))[:2] == ("pending", True)
    # One event per bracket: both lists found `both`, one decision moved it.
    assert sum(1 for p in recorder.payloads if p["orderId"] == str(both)) == 1


def test_two_schedulers_trigger_a_bracket_once_on_one_leg(engine, clean_tables, market):
    price = market.own_price()
    orders = [bracket(engine, price * Decimal("0.9"), price * Decimal("1.1")) for _ in range(10)]
    recorder = Recorder()
    barrier = threading.Barrier(2)

    def run() -> None:
        evaluation = service(engine, market, recorder)
        barrier.wait()
        evaluation.evaluate()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(recorder.sent) == sorted(orders)  # each once, across both schedulers
    assert {row(engine, order_id).trigger_leg for order_id in orders} == {"stopLoss"}


def test_a_trailing_stop_fires_on_a_drop_from_its_peak_and_not_on_a_narrower_one(
    engine, clean_tables, market
):
    now = market.class_price()
    fired = trailing(engine, now * Decimal("1.10"), 500)  # 9 % below its peak: past 5 %
    kept = trailing(engine, now * Decimal("1.10"), 2_000)  # within 20 %
    recorder = Recorder()
    result = service(engine, market, recorder).evaluate()
    assert result.triggered == [fired]
    assert tuple(row(engine, kept))[:2] == ("pending", True)
    shown = triggered_data(recorder)[str(fired)]["triggered"]
    assert shown["trailBps"] == 500
    assert Decimal(shown["triggerLevel"]) >= Decimal(shown["classPrice"])


def test_the_peak_is_shared_by_its_class_and_written_only_when_the_quote_rises(
    engine, clean_tables, market
):
    now = market.class_price()
    orders = [trailing(engine, now, 3_000) for _ in range(20)]
    evaluate = service(engine, market, Recorder()).evaluate
    assert evaluate().marked == 1  # their start: one mark for the class
    first = marks(engine)
    assert len(first) == 1
    for _ in range(3):
        assert evaluate().marked == 0  # no rise: no write
    assert marks(engine) == first
    market.move(now * Decimal("1.2"))
    result = evaluate()
    assert result.marked == 1  # one write for all 20 orders
    (mark,) = marks(engine)  # the older one it made useless is gone
    assert mark.peak > first[0].peak
    # The orders' rows were not written: their peak is the class's mark.
    assert {row(engine, order_id).peak_price for order_id in orders} == {
        row(engine, orders[0]).peak_price
    }
    # A third below the new peak: every one of them fires on the shared peak.
    market.move(now * Decimal("0.8"))
    assert sorted(evaluate().triggered) == sorted(orders)


def test_a_trailing_stop_waits_for_its_activation_price_then_trails_from_there(
    engine, clean_tables, market
):
    now = market.class_price()
    activation = (now * Decimal("1.1")).quantize(Decimal("0.000001"))
    order_id = add(
        engine,
        "trailing_stop",
        trail_bps=500,
        activation_price=activation,
        trigger_price=activation,
    )
    recorder = Recorder()
    evaluate = service(engine, market, recorder).evaluate
    assert evaluate().activated == 0
    assert row(engine, order_id).trail_since is None
    market.move(now * Decimal("1.2"))
    assert evaluate().activated == 1
    started = row(engine, order_id)
    assert started.trail_since is not None
    assert started.peak_price >= activation
    (event,) = [p for p in recorder.payloads if "activated" in p["data"]]
    assert event["status"] == "pending"
    assert event["seq"] == 2
    assert event["data"]["activated"]["activationPrice"] == format(activation.normalize(), "f")
    assert evaluate().activated == 0  # once


def test_an_expired_stop_fails_with_order_expired(engine, clean_tables, market):
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = add(engine, "stop", stop_price=Decimal("0.01"), expires_at=past)
    result = service(engine, market, Recorder()).evaluate()
    assert result.expired == 1
    assert tuple(row(engine, expired))[:2] == ("failed", False)


def test_class_amounts_are_powers_of_two_under_the_order():
    assert class_amount(K) <= SOL.to_atoms(AMOUNT) < 2 * class_amount(K)
