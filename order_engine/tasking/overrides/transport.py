"""Override 1, `redis-transport`: kombu's Redis transport with one client per channel, the
messages waiting in a queue taken and reserved many per round trip, acks that meet in flight in
one round trip, and plain pipelines for reservations and removals (the package's docstring says
what each saved)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from order_engine.infra.batching import GroupCommit
from order_engine.tasking.overrides.shapes import expect, expect_parameters

# The most messages the consumer takes from a queue in one round trip (the one BRPOP returned
# and those waiting behind it), never more than the prefetch window has room for.
RECEIVE_BATCH = 64

# Reserves the message BRPOP returned (ARGV[3]) and takes up to ARGV[2] more from the same list
# (KEYS[1]), reserving each as kombu's `QoS.append` does: its delivery tag into the index
# (KEYS[2]) at ARGV[1], `[message, exchange, routing key]` into the hash (KEYS[3]). The message
# is copied into that JSON verbatim (decoding and re-encoding it in Lua would turn its empty
# lists into objects). Returns the messages taken besides the first, oldest first. Taking and
# reserving in one script leaves no moment where a taken message is not reserved.
TAKE_AND_RESERVE = """
local taken = {ARGV[3]}
for _ = 1, tonumber(ARGV[2]) do
  local item = redis.call('RPOP', KEYS[1])
  if not item then break end
  taken[#taken + 1] = item
end
for _, item in ipairs(taken) do
  local properties = cjson.decode(item)['properties']
  local info = properties['delivery_info']
  local tag = properties['delivery_tag']
  redis.call('ZADD', KEYS[2], ARGV[1], tag)
  redis.call('HSET', KEYS[3], tag, '[' .. item .. ',' .. cjson.encode(info['exchange']) ..
    ',' .. cjson.encode(info['routing_key']) .. ']')
end
table.remove(taken, 1)
return taken
"""


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acks: GroupCommit[str, None] = GroupCommit("acks", self._remove_acked)
        # Delivery tags the consumer reserved with their batch: `append` only books them.
        self.reserved: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.reserved:
            self.reserved.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # kombu's bookkeeping only
            return
        super().append(message, delivery_tag)

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        """kombu's own pipeline for a reservation (`append`) or a removal (ack, reject), minus
        MULTI/EXEC; a pipeline handed in (the restore's WATCH transaction) is used as it is."""
        if pipe is not None:
            yield pipe
            return
        with self.channel.conn_or_acquire(client) as acquired:
            yield acquired.pipeline(transaction=False)

    def ack(self, delivery_tag: str) -> None:
        self.acks.submit(None, delivery_tag)
        virtual.QoS.ack(self, delivery_tag)  # kombu's bookkeeping, past its own removal

    def _remove_acked(self, _kind: Hashable, tags: Sequence[str]) -> list[None]:
        with self.pipe_or_acquire() as pipe:
            pipe.zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags).execute()
        return [None] * len(tags)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared_client: Any = None
    _take_and_reserve: Any = None

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's read of a BRPOP reply (the same steps, in the same order), but the message
        is reserved, and those waiting behind it taken and reserved, in one round trip
        (`TAKE_AND_RESERVE`); each is then delivered as kombu delivers one."""
        if self.global_keyprefix:
            return bool(super()._brpop_read(**options))
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            key, item = dest__item
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payloads = [loads(bytes_to_str(raw)) for raw in [item, *self._take_more(key, item)]]
            tags = [payload["properties"]["delivery_tag"] for payload in payloads]
            self.qos.reserved.update(tags)
            for n, payload in enumerate(payloads):
                try:
                    self.connection._deliver(payload, dest)
                except BaseException:
                    # Its own booking may not have happened: a tag left behind would make a later
                    # delivery of the same message skip its reservation.
                    self.qos.reserved.discard(tags[n])
                    self._give_back(tags[n + 1 :])
                    raise
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu types it bool
            self._flush_brpop_reauth()

    def _give_back(self, tags: list[str]) -> None:
        """Put the messages of a batch that a failed delivery left undelivered back at the head
        of their queue, in their order, and drop their reservations (kombu's restore), rather
        than leave them reserved until the visibility timeout."""
        qos = self.qos
        for tag in reversed(tags):
            qos.reserved.discard(tag)
            qos.restore_by_tag(tag)

    def _take_more(self, key: bytes, item: bytes) -> list[bytes]:
        """Reserve `item` and take (reserved) what waits behind it in `key`, within the
        prefetch window: the first message fills one place of it."""
        room = self.qos.can_consume_max_estimate()
        most = RECEIVE_BATCH - 1 if room is None else max(min(RECEIVE_BATCH, room) - 1, 0)
        with self.conn_or_acquire() as client:
            script = self._take_and_reserve
            if script is None:
                script = self._take_and_reserve = client.register_script(TAKE_AND_RESERVE)
            qos = self.qos
            keys = [key, qos.unacked_index_key, qos.unacked_key]
            return list(script(keys=keys, args=[time.time(), most, item], client=client))

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP/LISTEN client: kombu keeps that one
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"


def check() -> None:
    expect_parameters(kombu_redis.QoS, "pipe_or_acquire", ["self", "pipe", "client"])
    expect_parameters(kombu_redis.QoS, "ack", ["self", "delivery_tag"])
    expect_parameters(kombu_redis.Channel, "_create_client", ["self", "asynchronous"])
    expect_parameters(kombu_redis.Channel, "conn_or_acquire", ["self", "client"])
    for name in ("unacked_key", "unacked_index_key"):
        expect(hasattr(kombu_redis.QoS, name), f"kombu's Redis QoS has no {name}")
    _check_brpop_read()
    # Reservations and removals must still go through pipe_or_acquire for the plain
    # pipelines to apply to them.
    for method in ("append", "pipe_or_acquire"):
        expect(
            "pipe_or_acquire" in inspect.getsource(getattr(kombu_redis.QoS, method)),
            f"kombu's Redis QoS.{method} no longer builds its pipeline with pipe_or_acquire",
        )


def _check_brpop_read() -> None:
    """`Channel._brpop_read` repeats kombu's steps: they must still be these."""
    expect_parameters(kombu_redis.Channel, "_brpop_read", ["self"])
    source = inspect.getsource(kombu_redis.Channel._brpop_read)
    for step in (
        "self.client.parse_response(self.client.connection",
        "self.client.connection.disconnect()",
        "dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]",
        "self._queue_cycle.rotate(dest)",
        "self.connection._deliver(loads(bytes_to_str(item)), dest)",
        "self._in_poll = None",
        "self._flush_brpop_reauth()",
    ):
        expect(step in source, f"kombu's Redis Channel._brpop_read no longer does {step!r}")
    expect(
        "self.qos.append(message, message.delivery_tag)"
        in inspect.getsource(virtual.Channel.basic_consume),
        "kombu's virtual Channel.basic_consume no longer reserves through QoS.append",
    )
    expect(hasattr(kombu_redis, "Empty"), "kombu's Redis transport has no Empty")
    expect_parameters(virtual.QoS, "can_consume_max_estimate", ["self"])
    expect_parameters(kombu_redis.QoS, "restore_by_tag", ["self", "tag", "client", "leftmost"])
