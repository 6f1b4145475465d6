"""Every place the engine replaces an internal of Celery or kombu, in this one module.

Each override below says what it replaces, why, and what it saved when it was measured. They
were written against the Celery and kombu versions pinned in setup.cfg. At start-up `install`
checks that every internal it replaces still has the shape it was written against, and refuses
to start (`OverrideMismatch`, naming the override) when one does not: an upgrade must fail
loudly, not quietly lose messages. One setting turns them all off (`CELERY_OVERRIDES=false`):
the engine then runs on Celery and kombu exactly as they come, with the same behaviour and a
higher cost per order; the test suite passes both ways.

1. `redis-transport` — kombu's Redis transport (`Channel`, `QoS`, `Transport` below):
   - one `redis.Redis` client per channel. kombu builds a new one for every operation that is
     not handed one (`Channel.conn_or_acquire`): each ack, each reservation, each fanout
     publish, and building one runs redis-py's whole client constructor: ~4 % of the worker's
     CPU under the peer load. A `redis.Redis` holds no connection of its own (each command
     checks one out of the channel's pool), so one serves every greenlet and thread; it is
     rebuilt when kombu replaces the pool (after a fork or a reconnection).
   - acks that meet in flight go together (`batching.GroupCommit`): one ZREM/HDEL pipeline
     for all of them instead of one round trip each (Redis commands per order 28.9 -> 24.6).
     An ack still returns only once its message is removed, and a failure reaches every ack of
     the batch, as it would have reached each alone: the message stays reserved and Redis
     delivers it again after the visibility timeout, which the engine's claims make harmless.
   - reservations, acks and rejects go as plain pipelines, not MULTI/EXEC (kombu builds all
     three with `QoS.pipe_or_acquire`): two commands fewer a task. Redis runs the commands of
     one write back to back, so MULTI bought isolation nobody needs (the visibility sweep only
     takes entries older than its timeout) and atomicity against a Redis crash between the two
     commands, which loses the queue anyway when Redis keeps nothing on disk. A reservation
     writes the index first: a crash between leaves an index entry without its message, which
     the sweep drops, never a message the sweep cannot find. A message lost that way, like one
     popped by BRPOP before its reservation (a window kombu has), is an order the reconciler
     sends again.
2. `direct-task-sender` — kombu's publish path for `execute_order` on a Redis broker
   (`RedisTaskSender`): kombu builds a client per Redis call of a publish (~22 % of an
   `apply_async`), once for the task and once more for its `task-sent` event, through layers
   of producer, retry and exchange code. The sender writes the same two messages — Celery
   builds the task message itself; the kombu envelopes are written as kombu's Redis transport
   writes them (`_envelope`, checked against kombu's own builders at start-up) — with one
   long-lived client in one pipelined round trip, and sends that meet in flight share it.
3. `dispatcher-drain` — `celery.worker.loops._quick_drain`'s 0.1 s wait. Celery's loop for
   green pools (`synloop`), when AMQP heartbeats are on, drains the event dispatcher's
   connection after every message it takes, waiting up to 0.1 s for heartbeat frames that come
   seconds apart: with RabbitMQ a gevent worker took ten tasks a second (300 no-op tasks:
   30 s; 1.3 s with a 1 ms wait, which still reads a waiting frame). The Redis transport has no
   AMQP heartbeats and never takes this path.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from celery import Celery
from celery.app.amqp import AMQP
from celery.events.event import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from celery.worker import loops as celery_loops
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.backoff import NoBackoff
from redis.retry import Retry

from order_engine.config import ConfigError
from order_engine.infra.batching import GroupCommit
from order_engine.infra.queues import EXECUTE_ORDER, is_redis


class OverrideMismatch(ConfigError):
    """An internal that an override replaces no longer looks as the override expects."""

    def __init__(self, override: str, problem: str) -> None:
        super().__init__(
            f"the {override!r} override of Celery/kombu internals does not fit the installed "
            f"versions: {problem}. Install the versions pinned in setup.cfg, or start with "
            "CELERY_OVERRIDES=false to run on Celery and kombu as they come."
        )
        self.override = override


# -- 1. redis-transport ---------------------------------------------------------------------


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


def _check_redis_transport() -> None:
    _expect_parameters(kombu_redis.QoS, "pipe_or_acquire", ["self", "pipe", "client"])
    _expect_parameters(kombu_redis.QoS, "ack", ["self", "delivery_tag"])
    _expect_parameters(kombu_redis.Channel, "_create_client", ["self", "asynchronous"])
    _expect_parameters(kombu_redis.Channel, "conn_or_acquire", ["self", "client"])
    for name in ("unacked_key", "unacked_index_key"):
        _expect(hasattr(kombu_redis.QoS, name), f"kombu's Redis QoS has no {name}")
    # Reservations and removals must still go through pipe_or_acquire for the plain
    # pipelines to apply to them.
    for method in ("append", "pipe_or_acquire"):
        _expect(
            "pipe_or_acquire" in inspect.getsource(getattr(kombu_redis.QoS, method)),
            f"kombu's Redis QoS.{method} no longer builds its pipeline with pipe_or_acquire",
        )


# -- 2. direct-task-sender ------------------------------------------------------------------

# Same bounds as the Celery transport options (tasking/app.py): a frozen broker fails a send in
# about 2 s instead of holding the request; one immediate retry covers a pooled connection
# that died with a restarted server.
BROKER_SOCKET_TIMEOUT_S = 2
BROKER_CONNECT_TIMEOUT_S = 1


class RedisTaskSender:
    """Publishes tasks to a Redis broker exactly as Celery + kombu do, in one round trip."""

    def __init__(
        self,
        celery_app: Celery,
        client: redis.Redis,
        queue: str,
        db: int,
        kwargs_repr: Callable[[dict[str, Any]], str],
    ) -> None:
        self.app = celery_app
        self.client = client
        self.queue = queue
        self.kwargs_repr = kwargs_repr
        self.hostname = anon_nodename()  # Celery's `origin` and event `hostname`
        self.pid = os.getpid()
        self.send_sent_event = bool(celery_app.conf.task_send_sent_event)
        # kombu's fanout topic for the event exchange: keyprefix_fanout + exchange/routing key.
        self.event_topic = f"/{db}.{celery_app.conf.event_exchange}/task.sent"
        self._batches: GroupCommit[tuple[dict[str, Any], str], str] = GroupCommit(
            "tasks", self._send_batch
        )

    @classmethod
    def for_app(
        cls, celery_app: Celery, kwargs_repr: Callable[[dict[str, Any]], str]
    ) -> RedisTaskSender | None:
        """A sender for `celery_app`, or None where it does not apply: overrides off (kombu's
        own transport: Celery sends), another broker, a key prefix, priorities, a route."""
        conf = celery_app.conf
        options = conf.broker_transport_options or {}
        if conf.broker_transport != TRANSPORT or not is_redis(conf.broker_url or ""):
            return None
        if conf.task_routes.get(EXECUTE_ORDER) or (
            options.get("global_keyprefix")
            or options.get("priority_steps")
            or (options.get("fanout_prefix") is False or options.get("fanout_patterns") is False)
        ):
            return None
        if conf.task_default_exchange_type != "direct" or conf.task_queue_max_priority:
            return None
        queue = conf.task_default_queue
        if conf.task_queues and queue not in {q.name for q in conf.task_queues}:
            return None
        client = redis.Redis.from_url(
            conf.broker_url,
            socket_timeout=BROKER_SOCKET_TIMEOUT_S,
            socket_connect_timeout=BROKER_CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            health_check_interval=25,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        return cls(celery_app, client, queue, db, kwargs_repr)

    def send(self, name: str, kwargs: dict[str, Any]) -> str:
        """Queue task `name`; returns its id. Raises redis.RedisError if the broker fails.
        Sends that meet in flight (concurrent requests' orders) share one pipelined round
        trip (`batching.GroupCommit`)."""
        # reply_to is the sending thread's (Celery's thread_oid), not the batch's flusher's.
        return self._batches.submit(name, (kwargs, self.app.thread_oid))

    def send_many(self, name: str, kwargs_list: list[dict[str, Any]]) -> list[str]:
        """Queue one task `name` per kwargs, in one round trip; returns their ids."""
        return self._send_batch(name, [(kwargs, self.app.thread_oid) for kwargs in kwargs_list])

    def _send_batch(self, name: Hashable, calls: Sequence[tuple[dict[str, Any], str]]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        task_ids = [self._queue(pipe, str(name), kwargs, reply_to) for kwargs, reply_to in calls]
        pipe.execute()
        return task_ids

    def oldest_queued_order(self) -> uuid.UUID | None:
        """The order of the oldest `execute_order` message still in the queue, or None (an
        empty queue, a Redis error, another task at the head). It reads the envelope that
        `_queue` writes, which is kombu's."""
        try:
            raw = self.client.lindex(self.queue, -1)
            if raw is None:
                return None
            message = json.loads(raw)
            if message["headers"].get("task") != EXECUTE_ORDER:
                return None
            _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            return uuid.UUID(kwargs["order_id"])
        except (redis.RedisError, ValueError, KeyError, TypeError):
            return None

    def _queue(self, pipe: Any, name: str, kwargs: dict[str, Any], reply_to: str) -> str:
        app = self.app
        task_id = str(uuid.uuid4())
        # Celery's own message builder: the worker sees the same headers and body as from
        # send_task (routing, reply_to and origin as send_task fills them in).
        headers, properties, body, sent_event = app.amqp.create_task_message(
            task_id,
            name,
            (),
            kwargs,
            kwargsrepr=self.kwargs_repr(kwargs),
            reply_to=reply_to,
            create_sent_event=self.send_sent_event,
            origin=self.hostname,
            ignore_result=None,  # what send_task passes when the caller sets none
        )
        # Direct routing to the default queue goes through the anonymous exchange, as
        # celery/app/amqp.py `send_task_message` does; delivery mode 2 is persistent.
        properties = {**properties, "delivery_mode": 2}
        pipe.lpush(self.queue, _envelope(body, headers, properties, routing_key=self.queue))
        if sent_event is not None:
            pipe.publish(self.event_topic, self._sent_event(sent_event))
        return task_id

    def _sent_event(self, sent_event: dict[str, Any]) -> str:
        event = Event(
            "task-sent",
            hostname=self.hostname,
            utcoffset=utcoffset(),
            pid=self.pid,
            clock=self.app.clock.forward(),
            **sent_event,
            queue=self.queue,
            exchange="",
            routing_key=self.queue,
        )
        properties = {"delivery_mode": 1}
        return _envelope(
            event,
            {"hostname": self.hostname},
            properties,
            exchange=self.app.conf.event_exchange,
            routing_key="task.sent",
        )


def _envelope(
    body: Any,
    headers: dict[str, Any],
    properties: dict[str, Any],
    exchange: str = "",
    routing_key: str | None = None,
) -> str:
    """A message as kombu's Redis transport stores it (`Channel.prepare_message`, then
    `_inplace_augment_message`): JSON body, base64, one delivery tag. Without an exchange the
    routing key is the queue (`queue` of the caller, in `delivery_info`)."""
    encoded = base64.b64encode(dumps(body).encode()).decode()
    return dumps(
        {
            "body": encoded,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **properties,
                "delivery_info": {"exchange": exchange, "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def _kombu_envelope(body: Any, headers: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """What kombu's own builders make of a message, on a stand-in channel (no connection)."""

    class StandIn:
        body_encoding = kombu_redis.Channel.body_encoding
        default_priority = kombu_redis.Channel.default_priority
        codecs = virtual.Channel.codecs
        encode_body = virtual.Channel.encode_body

        def _next_delivery_tag(self) -> str:
            return str(uuid.uuid4())

    channel = StandIn()
    message = virtual.Channel.prepare_message(
        channel,  # type: ignore[arg-type]
        dumps(body),
        None,
        "application/json",
        "utf-8",
        headers,
        {"delivery_mode": 2},
    )
    virtual.Channel._inplace_augment_message(channel, message, "", routing_key)  # type: ignore[arg-type]
    return message


def _check_direct_task_sender() -> None:
    _expect_parameters(
        AMQP,
        "as_task_v2",
        ["self", "task_id", "name", "args", "kwargs", "kwargsrepr", "reply_to", "origin"],
        partial_list=True,
    )
    queue, body, headers = "orders", {"n": 1}, {"task": EXECUTE_ORDER}
    theirs = _kombu_envelope(body, headers, queue)
    ours = json.loads(_envelope(body, headers, {"delivery_mode": 2}, routing_key=queue))
    shape = (set(theirs), set(theirs["properties"]), theirs["properties"]["delivery_info"])
    _expect(
        shape == (set(ours), set(ours["properties"]), ours["properties"]["delivery_info"]),
        f"kombu's Redis message envelope is now {shape}",
    )
    for key in ("content-encoding", "content-type", "headers"):
        _expect(theirs[key] == ours[key], f"kombu's envelope {key} is now {theirs[key]!r}")
    decoded = base64.b64decode(theirs["body"]) if theirs["properties"]["body_encoding"] else b""
    _expect(decoded == dumps(body).encode(), "kombu's Redis transport no longer base64s bodies")
    _expect(
        kombu_redis.Channel._q_for_pri(StandInQueues(), queue, 0) == queue,  # type: ignore[arg-type]
        "kombu's Redis queue key for priority 0 is no longer the queue's name",
    )


class StandInQueues:
    """Enough of a Redis channel for `_q_for_pri` (no priority steps, the default separator)."""

    priority_steps = kombu_redis.PRIORITY_STEPS
    sep = kombu_redis.Channel.sep

    def priority(self, n: int) -> int:
        return kombu_redis.Channel.priority(self, n)  # type: ignore[arg-type]


# -- 3. dispatcher-drain --------------------------------------------------------------------

DISPATCHER_DRAIN_S = 0.001


def _check_dispatcher_drain() -> None:
    drain = getattr(celery_loops, "_quick_drain", None)
    original = getattr(drain, "func", drain)
    _expect_parameters(celery_loops, "_quick_drain", ["connection", "timeout"], function=original)
    _expect(
        "_quick_drain" in inspect.getsource(celery_loops.synloop),
        "celery.worker.loops.synloop no longer drains through _quick_drain",
    )


def _shorten_dispatcher_drain() -> None:
    drain = celery_loops._quick_drain
    if getattr(drain, "keywords", {}).get("timeout") != DISPATCHER_DRAIN_S:
        celery_loops._quick_drain = partial(drain, timeout=DISPATCHER_DRAIN_S)


# -- switching them on ----------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    name: str
    replaces: str
    check: Callable[[], None]


OVERRIDES = (
    Override(
        "redis-transport",
        "kombu.transport.redis Channel._create_client, QoS.pipe_or_acquire, QoS.ack",
        _check_redis_transport,
    ),
    Override(
        "direct-task-sender",
        "kombu's publish path and its Redis message envelope, for execute_order",
        _check_direct_task_sender,
    ),
    Override(
        "dispatcher-drain",
        "celery.worker.loops._quick_drain's 0.1 s wait",
        _check_dispatcher_drain,
    ),
)


def install(enabled: bool) -> str | None:
    """Check every override against the installed Celery and kombu and put in place what is
    patched globally; returns the broker transport to use (None: kombu's own). Raises
    OverrideMismatch, naming the override, if an internal no longer fits."""
    if not enabled:
        return None
    for override in OVERRIDES:
        try:
            override.check()
        except _Unfit as unfit:
            raise OverrideMismatch(override.name, str(unfit)) from None
        except Exception as exc:  # noqa: BLE001 - any surprise in the shape is a mismatch
            raise OverrideMismatch(override.name, f"{type(exc).__name__}: {exc}") from exc
    _shorten_dispatcher_drain()
    return TRANSPORT


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise _Unfit(problem)


def _expect_parameters(
    owner: Any,
    name: str,
    names: list[str],
    partial_list: bool = False,
    function: Callable[..., Any] | None = None,
) -> None:
    """`owner.name` (or `function`, what it wraps) takes `names` first (or among its
    parameters, with `partial_list`)."""
    where = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', owner.__name__)}"
    where = f"{where.strip('.')}.{name}"
    function = function or getattr(owner, name, None)
    if not callable(function):
        raise _Unfit(f"{where} is gone")
    have = list(inspect.signature(function).parameters)
    fits = set(names) <= set(have) if partial_list else have[: len(names)] == names
    _expect(fits, f"{where} takes {have}, expected {names}")


class _Unfit(Exception):
    """Raised by a check; `install` names the override it belongs to."""
