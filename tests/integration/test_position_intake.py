"""Stops, OCO brackets and trailing stops through the API (Flask app, real PostgreSQL, the
session's localnet for the quotes): validated by shape, stored, counted against the waiting
orders' cap, listed by type, read with their peak, cancelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import pytest
from sqlalchemy import select, text

from order_engine.models import Order, OrderEvent
from tests.integration.test_access import as_key, make_app, new_key
from tests.support.clients import order_body

pytestmark = pytest.mark.integration

# 1.5 SOL, no slippage named; each far from the market: it waits.
SELL = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
STOP = {**SELL, "type": "stop", "triggerPrice": "1"}
BRACKET = {
    **SELL,
    "type": "oco",
    "takeProfit": {"limitPrice": "1000000"},
    "stopLoss": {"triggerPrice": "1"},
}
TRAILING = {**SELL, "type": "trailing_stop", "trailBps": 500}


def post(client, body):
    return client.post("/api/orders/execute", json=body)


def accepted(client, body) -> str:
    response = post(client, body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["orderId"]


def stored(db_session, order_id) -> tuple[Order, list[OrderEvent]]:
    with db_session.begin():
        order = db_session.get(Order, order_id)
        query = select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.seq)
        return order, list(db_session.scalars(query))


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({**STOP, "limitPrice": "2"}, "limitPrice", "Not used by stop"),
        ({**STOP, "triggerPrice": None}, "triggerPrice", "required"),
        ({**SELL, "type": "stop"}, "triggerPrice", "required"),
        ({**STOP, "trailBps": 500}, "trailBps", "Not used by stop"),
        ({**BRACKET, "stopLoss": {"triggerPrice": "2000000"}}, "takeProfit", "above"),
        ({**BRACKET, "stopLoss": {"triggerPrice": "1000000"}}, "takeProfit", "above"),
        ({**BRACKET, "stopLoss": None}, "stopLoss", "required"),
        ({**SELL, "type": "oco", "takeProfit": {"limitPrice": "2"}}, "stopLoss", "required"),
        ({**BRACKET, "takeProfit": {"price": "2"}}, "takeProfit", "Unknown field"),
        ({**BRACKET, "limitPrice": "2"}, "limitPrice", "Not used by oco"),
        ({**TRAILING, "trailBps": 0}, "trailBps", "from 1 to 5000"),
        ({**TRAILING, "trailBps": 5001}, "trailBps", "from 1 to 5000"),
        ({**TRAILING, "trailBps": "500"}, "trailBps", "integer"),
        ({**SELL, "type": "trailing_stop"}, "trailBps", "required"),
        ({**TRAILING, "triggerPrice": "2"}, "triggerPrice", "Not used by trailing_stop"),
        ({**TRAILING, "activationPrice": "1e3"}, "activationPrice", "Exponent"),
        ({**order_body(), "stopLoss": {"triggerPrice": "1"}}, "stopLoss", "Not used by market"),
    ],
)
def test_a_contradictory_or_incomplete_order_is_a_422_naming_the_field(
    client, db_session, body, field, fragment
):
    response = post(client, body)
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    assert field in errors, errors
    assert any(fragment in message for message in errors[field]), errors


def test_a_stop_waits_with_its_price_its_size_class_and_the_wider_default_slippage(
    client, db_session
):
    order_id = accepted(client, STOP)
    order, events = stored(db_session, order_id)
    assert (order.type, order.waiting, order.stop_price) == ("stop", True, Decimal("1"))
    assert order.size_class == 30  # 1.5 SOL: 2^30 <= 1.5e9 lamports < 2^31
    assert order.slippage_bps == 300  # STOP_SLIPPAGE_BPS
    assert events[0].data["waitingFor"] == {"triggerPrice": "1"}
    shown = client.get(f"/api/orders/{order_id}").get_json()
    assert (shown["triggerPrice"], shown["waiting"], shown["slippageBps"]) == ("1", True, 300)
    # Its own slippage, when it names one, is its own.
    order, _ = stored(db_session, accepted(client, {**STOP, "slippageBps": 20}))
    assert order.slippage_bps == 20


def test_a_stop_the_market_is_already_under_runs_at_once(client, db_session):
    order_id = accepted(client, {**STOP, "triggerPrice": "1000000"})
    order, events = stored(db_session, order_id)
    assert order.waiting is False
    met = events[0].data["stopMetAtSubmission"]
    assert met["triggerPrice"] == "1000000"
    assert Decimal(met["quotedAmountOut"]) > 0


def test_a_bracket_waits_on_both_legs_and_answers_with_them(client, db_session):
    order_id = accepted(client, BRACKET)
    order, events = stored(db_session, order_id)
    assert (order.limit_price, order.trigger_price, order.stop_price) == (
        Decimal("1000000"),
        Decimal("1000000"),
        Decimal("1"),
    )
    assert events[0].data["waitingFor"] == {
        "takeProfit": {"limitPrice": "1000000"},
        "stopLoss": {"triggerPrice": "1"},
    }
    shown = client.get(f"/api/orders/{order_id}").get_json()
    assert shown["takeProfit"] == {"limitPrice": "1000000"}
    assert shown["stopLoss"] == {"triggerPrice": "1"}
    assert shown["leg"] is None


def test_a_trailing_stop_shows_the_peak_of_its_class_and_its_level(client, db_session):
    order_id = accepted(client, TRAILING)
    order, events = stored(db_session, order_id)
    assert (order.trail_bps, order.size_class) == (500, 30)
    assert order.trail_since is not None
    peak = order.peak_price  # its class's quote when it was accepted
    assert events[0].data["waitingFor"]["peakPrice"] == format(peak.normalize(), "f")
    # Its class's quote rose since: the answer shows the shared mark, not the order's row.
    with db_session.begin():
        db_session.execute(
            text("INSERT INTO trailing_peaks VALUES ('SOL', 'USDC', 30, :since, :peak)"),
            {"since": datetime.now(UTC) + timedelta(seconds=1), "peak": peak + 10},
        )
    shown = client.get(f"/api/orders/{order_id}").get_json()
    assert Decimal(shown["peakPrice"]) == peak + 10
    level = ((peak + 10) * Decimal("0.95")).quantize(Decimal("1e-18"), rounding=ROUND_FLOOR)
    assert Decimal(shown["triggerLevel"]) == level
    listed = client.get("/api/orders?type=trailing_stop").get_json()["orders"]
    assert [o["peakPrice"] for o in listed] == [shown["peakPrice"]]


def test_a_trailing_stop_with_an_activation_price_waits_for_it(client, db_session):
    order_id = accepted(client, {**TRAILING, "activationPrice": "1000000"})
    order, events = stored(db_session, order_id)
    assert (order.trigger_price, order.trail_since, order.stop_price) == (
        Decimal("1000000"),
        None,
        None,
    )
    assert events[0].data["waitingFor"] == {"trailBps": 500, "activationPrice": "1000000"}
    shown = client.get(f"/api/orders/{order_id}").get_json()
    assert (shown["peakPrice"], shown["triggerLevel"]) == (None, None)


def test_the_new_types_are_listed_by_type_and_cancelled_while_they_wait(client, db_session):
    ids = {name: accepted(client, body) for name, body in (("stop", STOP), ("oco", BRACKET))}
    ids["trailing_stop"] = accepted(client, TRAILING)
    for order_type, order_id in ids.items():
        listed = client.get(f"/api/orders?type={order_type}&status=pending").get_json()
        assert [o["orderId"] for o in listed["orders"]] == [order_id]
        assert client.delete(f"/api/orders/{order_id}").get_json()["status"] == "cancelled"
        order, _ = stored(db_session, order_id)
        assert order.status == "cancelled"


def test_every_waiting_type_counts_against_the_waiting_cap(app_settings, db_session):
    app = make_app(app_settings, db_session, MAX_WAITING_ORDERS="3")
    alice = as_key(app, new_key(db_session, "alice"))
    for body in (STOP, BRACKET, TRAILING):
        assert post(alice, body).status_code == 202
    for body in (STOP, BRACKET, TRAILING, order_body(type="limit", limitPrice="1000000")):
        refused = post(alice, body)
        assert refused.status_code == 429
        assert "waiting" in refused.get_json()["description"]
    assert post(alice, order_body()).status_code == 202  # a market order is not waiting
