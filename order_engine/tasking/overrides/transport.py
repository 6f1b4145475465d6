"""Override 1, `redis-transport`: kombu's Redis transport with one client per channel, acks
that meet in flight in one round trip, and plain pipelines for reservations and removals
(the package's docstring says what each saved)."""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from order_engine.infra.batching import GroupCommit
from order_engine.tasking.overrides.shapes import expect, expect_parameters


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


def check() -> None:
    expect_parameters(kombu_redis.QoS, "pipe_or_acquire", ["self", "pipe", "client"])
    expect_parameters(kombu_redis.QoS, "ack", ["self", "delivery_tag"])
    expect_parameters(kombu_redis.Channel, "_create_client", ["self", "asynchronous"])
    expect_parameters(kombu_redis.Channel, "conn_or_acquire", ["self", "client"])
    for name in ("unacked_key", "unacked_index_key"):
        expect(hasattr(kombu_redis.QoS, name), f"kombu's Redis QoS has no {name}")
    # Reservations and removals must still go through pipe_or_acquire for the plain
    # pipelines to apply to them.
    for method in ("append", "pipe_or_acquire"):
        expect(
            "pipe_or_acquire" in inspect.getsource(getattr(kombu_redis.QoS, method)),
            f"kombu's Redis QoS.{method} no longer builds its pipeline with pipe_or_acquire",
        )
