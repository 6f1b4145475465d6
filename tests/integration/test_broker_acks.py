"""The Redis transport's consumer and acks: the messages waiting in a queue are taken and
reserved together, within the prefetch window, each reserved as kombu would; acks that meet in
flight share one round trip, and each removes its own message's reservation and nothing else."""

import base64
import contextlib
import json
import threading
import uuid

import pytest
import redis
from kombu import Connection, Exchange, Queue

from order_engine.tasking import overrides
from order_engine.tasking.app import is_amqp
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

# No worker of the test session consumes this database: its reservations are the test's own.
PRIVATE_BROKER_DB = 12


@pytest.fixture
def private_broker(test_settings):
    if is_amqp(test_settings["CELERY_BROKER_URL"]):
        pytest.skip("the batched acks belong to the Redis transport")
    url = test_settings["CELERY_BROKER_URL"].rsplit("/", 1)[0] + f"/{PRIVATE_BROKER_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def test_acks_that_meet_in_flight_share_one_round_trip(private_broker):
    name = f"acks-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(private_broker, transport=overrides.Transport) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        for n in range(6):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        messages = [queue(channel).get(no_ack=False) for _ in range(6)]
        assert all(message is not None for message in messages)
        tags = [message.delivery_tag for message in messages]
        qos = channel.qos
        assert isinstance(qos, overrides.QoS)
        client = redis.Redis.from_url(private_broker)
        assert set(client.hkeys(qos.unacked_key)) == {tag.encode() for tag in tags}

        batches: list[list[str]] = []
        held, go = threading.Event(), threading.Event()
        remove = qos._remove_acked

        def held_remove(kind, batch):
            batches.append(list(batch))
            if len(batches) == 1:
                held.set()
                go.wait(5)
            return remove(kind, batch)

        qos.acks._run_batch = held_remove
        threads = [threading.Thread(target=message.ack) for message in messages[:5]]
        threads[0].start()
        assert held.wait(5), "the first ack never reached Redis"
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: qos.acks.queued() == 4, 5, "the other acks to queue")
        go.set()
        for thread in threads:
            thread.join(5)

        assert batches == [tags[:1], tags[1:5]]
        # Only the sixth, never acked, is still reserved (Redis would deliver it again).
        assert client.hkeys(qos.unacked_key) == [tags[5].encode()]
        assert client.zrange(qos.unacked_index_key, 0, -1) == [tags[5].encode()]
        # Closing the channel (a worker's warm shutdown) gives back what is still unacked:
        # the sixth message, and not one of the five.
        channel.close()
        back = [
            json.loads(base64.b64decode(json.loads(raw)["body"]))
            for raw in client.lrange(name, 0, -1)
        ]
        assert back == [{"n": 5}]
        client.close()


@contextlib.contextmanager
def consuming(private_broker, count, callback=None, prefetch=None):
    """`count` messages ({"n": 0}, {"n": 1}, …) published to a fresh queue and a consumer on it
    (the transport's own channel): yields (conn, channel, name, received, a Redis client)."""
    name = f"take-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    received: list = []
    client = redis.Redis.from_url(private_broker)
    with Connection(private_broker, transport=overrides.Transport) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        for n in range(count):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        if prefetch is not None:
            channel.basic_qos(0, prefetch, False)
        on_message = callback or (lambda body, message: received.append(message))
        try:
            with conn.Consumer(queue, channel=channel, callbacks=[on_message]):
                yield conn, channel, name, received, client
        finally:
            channel.close()
            client.close()


def queued(client, name):
    """The queue's messages' `n`, next to be taken first."""
    return [
        json.loads(base64.b64decode(json.loads(raw)["body"]))["n"]
        for raw in reversed(client.lrange(name, 0, -1))
    ]


def test_the_messages_waiting_are_taken_and_reserved_in_one_round_trip(private_broker):
    with consuming(private_broker, 5) as (conn, channel, name, received, client):
        conn.drain_events(timeout=5)  # one BRPOP reply
        assert [message.payload for message in received] == [{"n": n} for n in range(5)]
        assert client.llen(name) == 0
        qos = channel.qos
        assert qos.reserved == set()  # each booked by kombu's own append
        assert set(qos._delivered) == {m.delivery_tag for m in received}
        # Each reservation is what kombu's QoS.append writes: [message, exchange, key].
        for message in received:
            stored = json.loads(client.hget(qos.unacked_key, message.delivery_tag))
            assert stored == [message._raw, name, name]
            assert client.zscore(qos.unacked_index_key, message.delivery_tag) is not None
        for message in received[:2]:
            message.ack()
        wait_until(lambda: client.hlen(qos.unacked_key) == 3, 5, "two acks to land")
        # Closing the channel gives back the three unacked messages, intact.
        channel.close()
        assert sorted(queued(client, name)) == [2, 3, 4]


def test_no_more_are_taken_than_the_prefetch_window_has_room_for(private_broker):
    with consuming(private_broker, 5, prefetch=2) as (conn, channel, name, received, client):
        conn.drain_events(timeout=5)
        assert [message.payload for message in received] == [{"n": 0}, {"n": 1}]
        assert queued(client, name) == [2, 3, 4]
        assert client.hlen(channel.qos.unacked_key) == 2
        for message in received:
            message.ack()


def test_a_message_that_fails_before_its_booking_leaves_no_tag_behind(private_broker):
    with consuming(private_broker, 3) as (conn, channel, name, received, client):
        qos = channel.qos
        book = qos.append
        calls = []

        def refuse_the_first(message, tag):
            calls.append(tag)
            if len(calls) == 1:
                raise ConnectionError("the booking of the first message failed")
            book(message, tag)

        qos.append = refuse_the_first
        with pytest.raises(ConnectionError):
            conn.drain_events(timeout=5)
        assert qos.reserved == set()
        assert queued(client, name) == [1, 2]


def test_a_delivery_that_fails_gives_the_rest_of_its_batch_back_in_order(private_broker):
    seen = []

    def callback(body, message):
        seen.append(message)
        if body == {"n": 1}:
            raise RuntimeError("the handler of the second message failed")

    with consuming(private_broker, 4, callback) as (conn, channel, name, _, client):
        with pytest.raises(RuntimeError):
            conn.drain_events(timeout=5)
        qos = channel.qos
        # The two delivered are kombu's as ever (reserved); the two behind them are back at the
        # head of the queue, in order, and reserved no more.
        assert [message.payload for message in seen] == [{"n": 0}, {"n": 1}]
        assert qos.reserved == set()
        reserved = {tag.decode() for tag in client.hkeys(qos.unacked_key)}
        assert reserved == {message.delivery_tag for message in seen}
        assert queued(client, name) == [2, 3]
        for message in seen:
            message.ack()
