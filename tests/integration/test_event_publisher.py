"""Publishing committed events to Redis: the `active_order:<id>` live record and the
`order-events` channel, several events in one script call (and one message), never moving a
record backwards; and
reading a record back for a stream that opens, only when it is whole."""

from __future__ import annotations

import json
import uuid
from functools import partial

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from order_engine.live.events import EVENTS_CHANNEL, EventPublisher, published_events
from tests.support.batches import HoldFirst

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


class Listener:
    """The events channel, as an API process's hub reads it: the messages that held events of
    the orders followed, each as [(order id, seq), ...]. Other tests' events, published on the
    same server meanwhile, are left out."""

    def __init__(self, redis_client, *order_ids: str) -> None:
        self.order_ids = set(order_ids)
        self.pubsub = redis_client.pubsub()
        self.pubsub.subscribe(EVENTS_CHANNEL)
        assert self.pubsub.get_message(timeout=2)["type"] == "subscribe"

    def messages(self) -> list[list[tuple[str, int]]]:
        found = []
        while (message := self.pubsub.get_message(timeout=0.5)) is not None:
            data = message["data"]
            ours = [
                (order_id, json.loads(line)["seq"])
                for order_id, line in published_events(
                    data.decode() if isinstance(data, bytes) else data
                )
                if order_id in self.order_ids
            ]
            if ours:
                found.append(ours)
        return found


def received(listener: Listener) -> list[int]:
    return [seq for message in listener.messages() for _, seq in message]


def listen(redis_client, order_id: str) -> Listener:
    return Listener(redis_client, order_id)


def record(redis_client, order_id: str) -> dict:
    """The live record as a reader sees it: its owner, its latest seq and its events in seq
    order, each once (as published: a record may hold a repeat or a late event)."""
    owner, *lines = redis_client.get(f"active_order:{order_id}").split("\n")
    events = {}
    for line in lines:
        events.setdefault(json.loads(line)["seq"], json.loads(line))
    return {"accountId": owner, "seq": max(events), "events": [events[s] for s in sorted(events)]}


def seqs_of(record_: dict) -> list[int]:
    return [e["seq"] for e in record_["events"]]


def test_many_events_in_one_call_publish_each_and_append_to_the_record(publisher, redis_client):
    order_id, owner = str(uuid.uuid4()), uuid.uuid4()
    pubsub = listen(redis_client, order_id)
    assert publisher.publish(event(order_id, 1, "pending"), owner)
    assert publisher.publish_many([event(order_id, 2, "routing"), event(order_id, 3, "building")])
    assert received(pubsub) == [1, 2, 3]
    live = record(redis_client, order_id)
    assert (live["accountId"], live["seq"], seqs_of(live)) == (str(owner), 3, [1, 2, 3])
    assert live["events"][2] == event(order_id, 3, "building")
    assert redis_client.ttl(f"active_order:{order_id}") > TERMINAL_TTL_S  # still active

    assert publisher.publish(event(order_id, 4, "confirmed"))
    finished = record(redis_client, order_id)
    assert (finished["accountId"], seqs_of(finished)) == (str(owner), [1, 2, 3, 4])
    assert 0 < redis_client.ttl(f"active_order:{order_id}") <= TERMINAL_TTL_S  # ended: shorter
    assert [e["seq"] for e in publisher.recorded_events(uuid.UUID(order_id), owner)] == [1, 2, 3, 4]


def test_a_late_publish_of_an_older_event_is_delivered_but_never_rewinds_the_record(
    publisher, redis_client
):
    order_id, owner = str(uuid.uuid4()), uuid.uuid4()
    events = [event(order_id, seq, status) for seq, status in enumerate(STATUSES, 1)]
    publisher.publish(events[0], owner)
    publisher.publish_many(events[1:])
    pubsub = listen(redis_client, order_id)
    assert publisher.publish(events[2])  # a stale worker, late: appended again
    assert received(pubsub) == [3]  # subscribers drop it by seq themselves
    assert (record(redis_client, order_id)["seq"], seqs_of(record(redis_client, order_id))) == (
        4,
        [1, 2, 3, 4],
    )
    # Read back in seq order, each event once.
    assert publisher.recorded_events(uuid.UUID(order_id), owner) == events


@pytest.mark.parametrize(
    "former",
    [
        lambda client, key: client.hset(key, mapping={"seq": 1, "snapshot": "{}"}),
        lambda client, key: client.set(key, json.dumps(event(key[13:], 1, "pending"))),
    ],
    ids=["hash", "latest-event-only"],
)
def test_a_record_in_a_former_shape_is_replaced_or_never_read_back(publisher, redis_client, former):
    order_id, owner = str(uuid.uuid4()), uuid.uuid4()
    former(redis_client, f"active_order:{order_id}")
    assert publisher.publish(event(order_id, 2, "routing"))  # appended to: not whole
    assert publisher.recorded_events(uuid.UUID(order_id), None) is None
    assert publisher.publish(event(order_id, 1, "pending"), owner)  # read: whole from now on
    assert record(redis_client, order_id)["accountId"] == str(owner)
    assert [e["seq"] for e in publisher.recorded_events(uuid.UUID(order_id), owner)][0] == 1


def test_one_call_appends_to_each_orders_record_once_however_many_of_its_events_it_carries(
    publisher, redis_client
):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    listener = Listener(redis_client, first, second)
    with redis_client.monitor() as monitor:
        events = [event(first, 2, "routing"), event(second, 2, "routing")]
        assert publisher.publish_many([*events, event(first, 3, "building")])
        writes: list[str] = []
        for command in monitor.listen():  # the script's own commands, in order
            text = command["command"]
            assert not text.startswith("GET active_order:")  # appended without reading it
            if text.startswith("APPEND active_order:"):
                writes.append(text.split()[1])
            if text.startswith(f"APPEND active_order:{second}"):
                break  # written after every publish
    assert sorted(writes) == sorted([f"active_order:{first}", f"active_order:{second}"])
    # One message, the events in the call's order (each order's in seq order).
    assert listener.messages() == [[(first, 2), (second, 2), (first, 3)]]
    assert seqs_of(record(redis_client, first)) == [2, 3]
    assert seqs_of(record(redis_client, second)) == [2]


def test_an_orders_first_event_starts_its_record_without_reading_it(publisher, redis_client):
    order_id, owner = str(uuid.uuid4()), uuid.uuid4()
    key = f"active_order:{order_id}"
    with redis_client.monitor() as monitor:
        assert publisher.publish(event(order_id, 1, "pending"), owner)
        ran: list[str] = []
        for command in monitor.listen():  # the script's own commands, in order
            if command.get("client_type") == "lua" and key in command["command"]:
                ran.append(command["command"].split()[0])
                if ran[-1] == "SET":
                    break
    assert ran == ["SET"]  # SET … NX: no GET before it
    live = record(redis_client, order_id)
    assert (live["accountId"], seqs_of(live)) == (str(owner), [1])


def test_a_first_event_published_after_later_ones_completes_the_record(publisher, redis_client):
    # The task ran and published before intake's publication of `pending` (the task is sent
    # first): SET … NX finds the record there, names its owner and merges the event.
    order_id, owner = str(uuid.uuid4()), uuid.uuid4()
    publisher.publish_many([event(order_id, 2, "routing"), event(order_id, 3, "building")])
    pubsub = listen(redis_client, order_id)
    assert publisher.publish(event(order_id, 1, "pending"), owner)
    assert received(pubsub) == [1]
    late = record(redis_client, order_id)
    assert (late["accountId"], late["seq"], seqs_of(late)) == (str(owner), 3, [1, 2, 3])
    assert [e["seq"] for e in publisher.recorded_events(uuid.UUID(order_id), owner)] == [1, 2, 3]


def test_a_whole_record_is_read_back_for_its_owner_only(publisher, redis_client):
    order_id, owner = uuid.uuid4(), uuid.uuid4()
    events = [event(str(order_id), seq, status) for seq, status in enumerate(STATUSES, 1)]
    publisher.publish(events[0], owner)
    publisher.publish_many(events[1:])
    assert publisher.recorded_events(order_id, owner) == events
    assert publisher.recorded_events(order_id, None) == events  # an admin key: any owner's
    assert publisher.recorded_events(order_id, uuid.uuid4()) is None  # the database decides
    assert publisher.recorded_events(uuid.uuid4(), owner) is None  # no record


@pytest.mark.parametrize(
    "publish",
    [
        # Begun after seq 1 (Redis lost the order's earlier events) and nobody named the owner.
        lambda p, oid, owner: p.publish_many([event(oid, 2, "routing"), event(oid, 3, "building")]),
        # Begun after seq 1, even though the owner is known.
        lambda p, oid, owner: p.publish(event(oid, 2, "routing"), owner),
        # A gap: seq 2's publish never happened (Redis was away a moment).
        lambda p, oid, owner: (
            p.publish(event(oid, 1, "pending"), owner),
            p.publish(event(oid, 3, "building")),
        ),
    ],
    ids=["no-owner", "no-first-event", "gap"],
)
def test_a_record_that_is_not_whole_is_not_read_back(publisher, redis_client, publish):
    order_id, owner = uuid.uuid4(), uuid.uuid4()
    publish(publisher, str(order_id), owner)
    assert redis_client.exists(f"active_order:{order_id}")
    assert publisher.recorded_events(order_id, owner) is None


def test_an_unreachable_redis_reads_as_no_record():
    publisher = EventPublisher(
        redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)),
        TERMINAL_TTL_S,
    )
    assert publisher.recorded_events(uuid.uuid4(), None) is None
    assert publisher.publish(event(str(uuid.uuid4()), 1, "pending")) is False


STATUSES = ["pending", "routing", "building", "submitted"]


def test_publications_that_meet_in_flight_share_one_script_call(publisher, redis_client):
    publisher._script = held = HoldFirst(publisher._script)
    orders = [str(uuid.uuid4()) for _ in range(4)]
    held.run_together(
        publisher._batches,
        [partial(publisher.publish, event(order_id, 1, "pending")) for order_id in orders],
    )
    assert len(held.calls) == 2
    assert sorted(held.calls[1]) == sorted(f"active_order:{order_id}" for order_id in orders[1:])
    for order_id in orders:
        assert seqs_of(record(redis_client, order_id)) == [1]


def test_records_read_together_share_one_round_trip(publisher, redis_client):
    orders, owner = [str(uuid.uuid4()) for _ in range(4)], uuid.uuid4()
    for order_id in orders:
        publisher.publish(event(order_id, 1, "pending"), owner)
    publisher.client.mget = held = HoldFirst(publisher.client.mget)
    results: dict[str, list | None] = {}

    def read(order_id: str) -> None:
        results[order_id] = publisher.recorded_events(uuid.UUID(order_id), owner)

    held.run_together(publisher._reads, [partial(read, order_id) for order_id in orders])
    assert len(held.calls) == 2
    assert sorted(held.calls[1]) == sorted(f"active_order:{order_id}" for order_id in orders[1:])
    assert {order_id: [e["seq"] for e in events or []] for order_id, events in results.items()} == {
        order_id: [1] for order_id in orders
    }
