"""kombu's Redis transport with one client per channel, instead of one per call.

kombu's Redis channel builds a new `redis.Redis` for every operation that is not handed one
(`Channel.conn_or_acquire`): each ack, each reservation (`QoS.append`), each fanout publish.
Building one runs redis-py's whole client constructor (its table of response callbacks);
under the peer load that was ~4 % of the worker's CPU for the acks and reservations alone
(research/perf.md §3a measured the same on the publishing side). A `redis.Redis` holds no
connection of its own (each command checks one out of the channel's pool), so one per channel
serves every greenlet and thread; it is rebuilt when kombu replaces the pool (after a fork or a
reconnection). Selected for `redis://` and `rediss://` brokers in `tasking.celery_config`.

Acks that meet in flight go together (`batching.GroupCommit`): kombu removes an acked message
from its reservation (the `unacked` hash and its index) with a MULTI/ZREM/HDEL/EXEC of its
own, one round trip and four commands a task; under load hundreds of tasks end within the
same few milliseconds, and one transaction removes them all (ZREM and HDEL take many keys).
An ack still returns only once its message is removed, and a failure reaches every ack of
the batch, as it would have reached each alone: the message stays reserved and Redis
delivers it again after the visibility timeout, which the engine's claims make harmless.

Reservations, acks and rejects go as plain pipelines, not MULTI/EXEC transactions (kombu
builds all three with `QoS.pipe_or_acquire`, overridden here): two commands fewer a task (of
about 20 an order under the peer load). Redis runs the commands of one write back to back, so
MULTI bought isolation nobody needs (the visibility sweep only takes entries older than its
timeout) and atomicity against a Redis crash between the two, which loses the queue anyway
when Redis keeps nothing on disk. A reservation writes the index first: a crash between
leaves an index entry without its message, which the sweep drops, never a message the sweep
cannot find; a removal split that way leaves only the body of a message already done. A
message lost that way, as one popped by BRPOP before its reservation (a window kombu has), is
an order the reconciler sends again (Design, "Exactly once").
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from order_engine.infra.batching import GroupCommit


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acks: GroupCommit[str, None] = GroupCommit("acks", self._remove_acked)

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
