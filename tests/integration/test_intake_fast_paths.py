"""Intake's and streaming's fast paths do what the slower paths they replace did."""

import base64
import json
import uuid

import pytest
import redis
from sqlalchemy import Engine, event

from order_engine import create_app, dispatch
from order_engine.api.intake import order_service
from order_engine.models import DEFAULT_ACCOUNT_ID
from order_engine.tasking import is_amqp

pytestmark = pytest.mark.integration

VALID = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
VOLATILE_HEADERS = {"id", "root_id"}
VOLATILE_PROPERTIES = {"correlation_id", "delivery_tag"}
VOLATILE_EVENT_FIELDS = {"uuid", "root_id", "timestamp", "clock"}


def _decode(raw: bytes) -> dict:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def _without(mapping: dict, keys: set[str]) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}


# A broker database no worker of the test session consumes (the live stacks' workers would
# take the messages these tests read back).
PRIVATE_BROKER_DB = 11


@pytest.fixture
def test_settings(test_settings):
    if is_amqp(test_settings["CELERY_BROKER_URL"]):
        return test_settings
    broker_url = test_settings["CELERY_BROKER_URL"].rsplit("/", 1)[0] + f"/{PRIVATE_BROKER_DB}"
    return {**test_settings, "CELERY_BROKER_URL": broker_url}


@pytest.fixture
def broker(test_settings):
    if is_amqp(test_settings["CELERY_BROKER_URL"]):
        pytest.skip("the direct sender writes to a Redis broker only (RabbitMQ: send_task)")
    client = redis.Redis.from_url(test_settings["CELERY_BROKER_URL"])
    client.delete("orders")
    yield client
    client.delete("orders")
    client.close()


def test_direct_sender_writes_the_task_and_event_celery_writes(test_settings, broker):
    app = create_app({**test_settings, "TASK_EVENTS": "true"})  # `task-sent` is written too
    celery_app = app.extensions["celery"]
    sender = dispatch.task_sender(celery_app)
    assert sender is not None
    events = broker.pubsub()
    events.psubscribe(sender.event_topic)
    assert events.get_message(timeout=2)["type"] == "psubscribe"
    kwargs = {"order_id": str(uuid.uuid4())}
    with app.app_context():
        celery_app.send_task(dispatch.EXECUTE_ORDER, kwargs=kwargs)
        sender.send(dispatch.EXECUTE_ORDER, kwargs)
    by_celery, by_sender = (_decode(m) for m in reversed(broker.lrange("orders", 0, -1)))
    assert by_sender["body"] == by_celery["body"]
    assert _without(by_sender["headers"], VOLATILE_HEADERS) == _without(
        by_celery["headers"], VOLATILE_HEADERS
    )
    assert by_sender["headers"]["root_id"] == by_sender["headers"]["id"]
    assert _without(by_sender["properties"], VOLATILE_PROPERTIES) == _without(
        by_celery["properties"], VOLATILE_PROPERTIES
    )
    assert _without(by_sender, {"body", "headers", "properties"}) == _without(
        by_celery, {"body", "headers", "properties"}
    )
    sent = [events.get_message(timeout=2) for _ in range(2)]
    events.close()
    assert [m["channel"] for m in sent] == [sender.event_topic.encode()] * 2
    celery_event, sender_event = (_decode(m["data"]) for m in sent)
    assert sender_event["body"]["uuid"] == by_sender["headers"]["id"]
    assert _without(sender_event["body"], VOLATILE_EVENT_FIELDS) == _without(
        celery_event["body"], VOLATILE_EVENT_FIELDS
    )
    assert _without(sender_event["properties"], {"delivery_tag"}) == _without(
        celery_event["properties"], {"delivery_tag"}
    )
    assert sender_event["headers"] == celery_event["headers"]


def test_no_task_sent_event_unless_task_events_are_on(app, broker):
    sender = dispatch.task_sender(app.extensions["celery"])
    assert sender is not None
    events = broker.pubsub()
    events.psubscribe(sender.event_topic)
    assert events.get_message(timeout=2)["type"] == "psubscribe"
    with app.app_context():
        sender.send(dispatch.EXECUTE_ORDER, {"order_id": str(uuid.uuid4())})
    assert broker.llen("orders") == 1
    assert events.get_message(timeout=0.5) is None  # the default: Flower turns events on
    events.close()


def test_a_batch_queues_one_task_per_order_in_order(app, broker):
    order_ids = [uuid.uuid4() for _ in range(3)]
    with app.app_context():
        dispatch.enqueue_execute_orders(order_ids)
    queued = [_decode(raw) for raw in reversed(broker.lrange("orders", 0, -1))]
    assert [m["body"][1] for m in queued] == [{"order_id": str(o)} for o in order_ids]
    assert {m["headers"]["task"] for m in queued} == {dispatch.EXECUTE_ORDER}
    assert len({m["headers"]["id"] for m in queued}) == 3


def test_intake_queues_one_task_for_its_order(client, broker):
    response = client.post("/api/orders/execute", json=VALID)
    assert response.status_code == 202
    (raw,) = broker.lrange("orders", 0, -1)
    message = _decode(raw)
    assert message["headers"]["task"] == dispatch.EXECUTE_ORDER
    kwargs = message["body"][1]
    assert kwargs["order_id"] == response.get_json()["orderId"]
    # The copy of the new market order its executor routes from before touching the row.
    copy = kwargs["order"]
    assert (copy["tokenIn"], copy["tokenOut"], copy["amount"]) == ("SOL", "USDC", "1.5")
    assert copy["accountId"] == str(DEFAULT_ACCOUNT_ID)


def test_history_tells_an_unknown_order_from_one_without_later_events(app, client):
    order_id = uuid.UUID(client.post("/api/orders/execute", json=VALID).get_json()["orderId"])
    with app.test_request_context():
        service = order_service()
        (pending,) = service.history(order_id)
        assert service.history(order_id, after_seq=1) == []
        assert service.history(uuid.uuid4()) is None
        assert service.events_after(uuid.uuid4(), 0) == []
    assert (pending["seq"], pending["status"], pending["attempt"]) == (1, "pending", 0)
    assert pending["data"]["amount"] == "1.5"
    assert pending == client.get(f"/api/orders/{order_id}").get_json()["events"][0]


def test_a_stream_opening_on_an_active_order_replays_its_live_record_without_a_query(app, client):
    order_id = uuid.UUID(client.post("/api/orders/execute", json=VALID).get_json()["orderId"])
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE")):  # the test's rolled-back session
            statements.append(statement)

    with app.test_request_context():
        service = order_service()
        from_database = service.history(order_id)
        event.listen(Engine, "before_cursor_execute", count)
        try:
            replayed = service.opening_history(order_id, 0, DEFAULT_ACCOUNT_ID)
            assert statements == []  # Redis answered
            assert service.opening_history(order_id, 1, None) == []  # an admin's, resumed
            assert statements == []
            assert service.opening_history(order_id, 0, uuid.uuid4()) is None  # not theirs
            assert len(statements) == 1  # the database said so
        finally:
            event.remove(Engine, "before_cursor_execute", count)
    assert replayed == from_database
    assert [e["status"] for e in replayed] == ["pending"]
