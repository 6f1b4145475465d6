"""Publishing committed events to Redis: the `active_order:<id>` snapshot and the `order:<id>`
channel, several events in one script call, never moving a snapshot backwards."""

from __future__ import annotations

import json
import uuid

import pytest

from order_engine.events import EventPublisher

pytestmark = pytest.mark.integration

TERMINAL_TTL_S = 60


def event(order_id: str, seq: int, status: str) -> dict:
    return {
        "orderId": order_id,
        "seq": seq,
        "status": status,
        "at": "2026-11-30T12:00:00.000Z",
        "attempt": 1,
        "data": {"note": '"seq":999 inside the data is not the seq'},
    }


@pytest.fixture
def publisher(redis_client):
    return EventPublisher(redis_client, TERMINAL_TTL_S)


def listen(redis_client, order_id: str):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"order:{order_id}")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    return pubsub


def received(pubsub) -> list[int]:
    seqs = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        seqs.append(json.loads(message["data"])["seq"])
    return seqs


def test_many_events_in_one_call_publish_each_and_keep_the_latest_snapshot(publisher, redis_client):
    order_id = str(uuid.uuid4())
    pubsub = listen(redis_client, order_id)
    assert publisher.publish_many([event(order_id, 2, "routing"), event(order_id, 3, "building")])
    assert received(pubsub) == [2, 3]
    snapshot = json.loads(redis_client.get(f"active_order:{order_id}"))
    assert (snapshot["seq"], snapshot["status"]) == (3, "building")
    assert redis_client.ttl(f"active_order:{order_id}") > TERMINAL_TTL_S  # still active

    assert publisher.publish(event(order_id, 5, "confirmed"))
    assert 0 < redis_client.ttl(f"active_order:{order_id}") <= TERMINAL_TTL_S


def test_a_late_publish_of_an_older_event_is_delivered_but_never_rewinds_the_snapshot(
    publisher, redis_client
):
    order_id = str(uuid.uuid4())
    publisher.publish(event(order_id, 4, "submitted"))
    pubsub = listen(redis_client, order_id)
    assert publisher.publish(event(order_id, 3, "building"))  # a stale worker, late
    assert received(pubsub) == [3]  # subscribers drop it by seq themselves
    assert json.loads(redis_client.get(f"active_order:{order_id}"))["seq"] == 4


def test_a_snapshot_in_the_former_hash_shape_is_replaced(publisher, redis_client):
    order_id = str(uuid.uuid4())
    redis_client.hset(f"active_order:{order_id}", mapping={"seq": 1, "snapshot": "{}"})
    assert publisher.publish(event(order_id, 2, "routing"))
    assert json.loads(redis_client.get(f"active_order:{order_id}"))["seq"] == 2


def test_one_call_writes_each_orders_snapshot_once_however_many_of_its_events_it_carries(
    publisher, redis_client
):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    pubsub_first, pubsub_second = listen(redis_client, first), listen(redis_client, second)
    with redis_client.monitor() as monitor:
        events = [event(first, 2, "routing"), event(second, 2, "routing")]
        assert publisher.publish_many([*events, event(first, 3, "building")])
        writes: list[str] = []
        for command in monitor.listen():  # the script's own commands, in order
            text = command["command"]
            if text.startswith("SET active_order:"):
                writes.append(text.split()[1])
            if text.startswith(f"PUBLISH order:{first}") and '"seq":3' in text:
                break
    assert sorted(writes) == sorted([f"active_order:{first}", f"active_order:{second}"])
    assert received(pubsub_first) == [2, 3]
    assert received(pubsub_second) == [2]
    assert json.loads(redis_client.get(f"active_order:{first}"))["seq"] == 3
    assert json.loads(redis_client.get(f"active_order:{second}"))["seq"] == 2
