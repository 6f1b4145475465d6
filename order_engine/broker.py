"""kombu's Redis transport with one client per channel, instead of one per call.

kombu's Redis channel builds a new `redis.Redis` for every operation that is not handed one
(`Channel.conn_or_acquire`): each ack, each reservation (`QoS.append`), each fanout publish.
Building one runs redis-py's whole client constructor (its table of response callbacks);
under the peer load that was ~4 % of the worker's CPU for the acks and reservations alone
(research/perf.md §3a measured the same on the publishing side). A `redis.Redis` holds no
connection of its own (each command checks one out of the channel's pool), so one per channel
serves every greenlet and thread; it is rebuilt when kombu replaces the pool (after a fork or a
reconnection). Selected for `redis://` and `rediss://` brokers in `tasking.celery_config`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
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
