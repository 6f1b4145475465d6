"""POST /api/orders/execute validation, idempotency and reads, through the Flask app."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

import pytest
from sqlalchemy import func, select, text

from order_engine.models import Order, OrderEvent
from tests.support.statements import statements_sent

pytestmark = pytest.mark.integration

VALID = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}


def post(client, body, headers=None, content_type="application/json"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        "/api/orders/execute", data=data, content_type=content_type, headers=headers or {}
    )


def order_count(db_session) -> int:
    # Each read in its own (savepoint) transaction: services begin their own afterwards.
    with db_session.begin():
        return db_session.scalar(select(func.count()).select_from(Order))


def load_order(db_session, order_id) -> tuple[Order, list[OrderEvent]]:
    with db_session.begin():
        order = db_session.get(Order, order_id)
        query = select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.seq)
        return order, list(db_session.scalars(query))


def test_valid_order_is_accepted_with_links_and_a_pending_event(client, db_session):
    response = post(client, {**VALID, "clientOrderId": "bot-1"})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending"
    assert body["links"]["ws"].endswith(f"/api/orders/execute?orderId={body['orderId']}")
    order, events = load_order(db_session, body["orderId"])
    assert (order.token_in, order.token_out, order.amount_in) == ("SOL", "USDC", Decimal("1.5"))
    assert [(e.seq, e.status) for e in events] == [(1, "pending")]


def test_an_accepted_order_is_committed_by_intake_itself(client, engine):
    """Intake's insert is committed when the 202 is sent, by the committer production uses
    (one autocommit statement on its own pooled connection, through the batcher), not left in
    the test's transaction: another connection reads the order and its event."""
    with statements_sent() as sent:
        response = post(client, VALID)
    assert response.status_code == 202
    [insert] = [s for s in sent if "INSERT INTO orders" in s.sql]
    assert insert.autocommit
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.status, e.seq FROM orders o JOIN order_events e ON e.order_id = o.id"
                " WHERE o.id = :id"
            ),
            {"id": response.get_json()["orderId"]},
        ).all()
    assert [tuple(row) for row in rows] == [("pending", 1)]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"amount": "NaN"}, "amount", "plain decimal"),
        ({"amount": "Infinity"}, "amount", "plain decimal"),
        ({"amount": "-1"}, "amount", "greater than 0"),
        ({"amount": "0"}, "amount", "greater than 0"),
        ({"amount": "0.0000000001"}, "amount", "9 decimals"),
        ({"amount": "1e400"}, "amount", "Exponent"),
        ({"amount": "99999999999999999999"}, "amount", "largest"),
        ({"amount": True}, "amount", "boolean"),
        ({"amount": None}, "amount", "null"),
        ({"tokenIn": "DOGE"}, "tokenIn", "unknown token"),
        ({"tokenOut": "SOL"}, "tokenOut", "differ"),
        ({"tokenIn": "wSOL", "tokenOut": "SOL"}, "tokenOut", "differ"),
        ({"tokenIn": "So11111111111111111111111111111111111111111"}, "tokenIn", "not listed"),
        ({"tokenIn": "JUP", "tokenOut": "RAY"}, "tokenOut", "No venue lists"),
        ({"slippageBps": 5001}, "slippageBps", "5000"),
        ({"slippageBps": -1}, "slippageBps", "0"),
        ({"slippageBps": 1.5}, "slippageBps", "integer"),
        ({"type": "limit"}, "limitPrice", "required"),
        ({"type": "sniper"}, "tokenOut", "market order"),
        ({"limitPrice": "1"}, "limitPrice", "Not used by market"),
        ({"type": "iceberg"}, "type", "one of"),
        ({"status": "confirmed"}, "status", "Unknown field"),
        ({"clientOrderId": "x" * 129}, "clientOrderId", "Length"),
    ],
)
def test_invalid_field_is_refused_by_name_and_creates_nothing(
    client, db_session, change, field, fragment
):
    before = order_count(db_session)
    response = post(client, {**VALID, **change})
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == 422
    assert any(fragment.lower() in m.lower() for m in body["errors"][field]), body
    assert order_count(db_session) == before


@pytest.mark.parametrize("missing", ["type", "tokenIn", "tokenOut", "amount"])
def test_missing_required_field_is_named(client, missing):
    body = {k: v for k, v in VALID.items() if k != missing}
    response = post(client, body)
    assert response.status_code == 422
    assert missing in response.get_json()["errors"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"type": "market", "amount": NaN}', None),
        ('{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": 1e400}', "Exponent"),
        ('{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.1}', None),
    ],
)
def test_json_numbers_are_exact_or_refused(client, db_session, raw, fragment):
    response = post(client, raw)
    if fragment is None and "1.1" in raw:
        assert response.status_code == 202
        order, _events = load_order(db_session, response.get_json()["orderId"])
        assert order.amount_in == Decimal("1.1")
    else:
        assert response.status_code == 422
        if fragment:
            assert fragment in " ".join(response.get_json()["errors"]["amount"])


def test_malformed_json_is_400(client, db_session):
    before = order_count(db_session)
    response = post(client, '{"type": "market",')
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["description"]
    assert order_count(db_session) == before


def test_json_that_is_not_an_object_is_400(client):
    assert post(client, "[1, 2]").status_code == 400


def test_non_json_content_type_is_415(client):
    response = post(client, "type=market", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.get_json()["code"] == 415


def test_oversized_body_is_413(client, db_session):
    before = order_count(db_session)
    response = post(client, {**VALID, "clientOrderId": "x" * 20_000})
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
    assert order_count(db_session) == before


def test_same_idempotency_key_and_body_returns_the_same_order(client, db_session):
    before = order_count(db_session)
    first = post(client, VALID, headers={"Idempotency-Key": "key-1"})
    again = post(client, VALID, headers={"Idempotency-Key": "key-1"})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["orderId"] == first.get_json()["orderId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert order_count(db_session) == before + 1


def test_same_idempotency_key_with_another_body_is_422(client, db_session):
    before = order_count(db_session)
    post(client, VALID, headers={"Idempotency-Key": "key-2"})
    response = post(client, {**VALID, "amount": "2"}, headers={"Idempotency-Key": "key-2"})
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]
    assert order_count(db_session) == before + 1


def test_get_order_returns_it_with_its_events(client):
    order_id = post(client, VALID).get_json()["orderId"]
    body = client.get(f"/api/orders/{order_id}").get_json()
    assert body["orderId"] == order_id
    assert body["amount"] == "1.5"
    assert [e["status"] for e in body["events"]] == ["pending"]


def test_unknown_and_malformed_order_ids_are_404(client):
    assert client.get("/api/orders/00000000-0000-0000-0000-000000000000").status_code == 404
    response = client.get("/api/orders/not-a-uuid")
    assert response.status_code == 404
    assert "not an order id" in response.get_json()["description"]


def since_now() -> str:
    """A createdFrom filter that hides orders other tests committed to the shared database."""
    return quote(datetime.now(UTC).isoformat())


def test_list_pages_newest_first_without_repeats(client):
    created_from = since_now()
    ids = [post(client, {**VALID, "amount": str(n)}).get_json()["orderId"] for n in range(1, 6)]
    seen, cursor = [], None
    while True:
        query = f"/api/orders?limit=2&createdFrom={created_from}" + (
            f"&cursor={cursor}" if cursor else ""
        )
        body = client.get(query).get_json()
        seen += [o["orderId"] for o in body["orders"]]
        cursor = body["nextCursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


def test_list_filters_by_status_and_refuses_bad_filters(client):
    created_from = since_now()
    post(client, VALID)
    pending = client.get(f"/api/orders?status=pending&createdFrom={created_from}")
    assert len(pending.get_json()["orders"]) == 1
    confirmed = client.get(f"/api/orders?status=confirmed&createdFrom={created_from}")
    assert confirmed.get_json()["orders"] == []
    response = client.get("/api/orders?status=done&limit=1000")
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"status", "limit"}


def test_cancel_a_waiting_order_then_409_on_a_second_cancel(client):
    order_id = post(client, VALID).get_json()["orderId"]
    response = client.delete(f"/api/orders/{order_id}")
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    again = client.delete(f"/api/orders/{order_id}")
    assert again.status_code == 409
    assert "cancelled" in again.get_json()["description"]


def test_tokens_may_be_given_by_mint_and_wsol_routes_as_sol(client, db_session):
    body = {
        **VALID,
        "tokenIn": "So11111111111111111111111111111111111111112",
        "tokenOut": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
    }
    response = post(client, body)
    assert response.status_code == 202
    order, _events = load_order(db_session, response.get_json()["orderId"])
    assert (order.token_in, order.token_out) == ("SOL", "USDC")


def test_a_limit_order_may_expire_in_a_relative_time_and_replays_as_sent(client, db_session):
    """`expiresIn` is read at each request; a replay with the same key and body is the same
    order, not a 422 for an expiry a few milliseconds later."""
    body = {**VALID, "type": "limit", "limitPrice": "100000", "expiresIn": "1h"}
    first = post(client, body, headers={"Idempotency-Key": "key-expires-in"})
    assert first.status_code == 202, first.get_json()
    again = post(client, body, headers={"Idempotency-Key": "key-expires-in"})
    assert again.status_code == 202, again.get_json()
    assert again.get_json()["orderId"] == first.get_json()["orderId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    order, _events = load_order(db_session, first.get_json()["orderId"])
    ahead = order.expires_at - datetime.now(UTC)
    assert 3500 < ahead.total_seconds() <= 3600
    other = post(client, {**body, "expiresIn": "2h"}, headers={"Idempotency-Key": "key-expires-in"})
    assert other.status_code == 422
