"""Override 2, `direct-task-sender`: `execute_order` published to a Redis broker as Celery and
kombu would, with one long-lived client in one pipelined round trip."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import redis
from celery import Celery
from celery.app.amqp import AMQP
from celery.events.event import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.backoff import NoBackoff
from redis.retry import Retry

from order_engine.infra.batching import GroupCommit
from order_engine.infra.queues import EXECUTE_ORDER, is_redis
from order_engine.tasking.overrides.shapes import expect, expect_parameters
from order_engine.tasking.overrides.transport import TRANSPORT

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


def check() -> None:
    expect_parameters(
        AMQP,
        "as_task_v2",
        ["self", "task_id", "name", "args", "kwargs", "kwargsrepr", "reply_to", "origin"],
        partial_list=True,
    )
    queue, body, headers = "orders", {"n": 1}, {"task": EXECUTE_ORDER}
    theirs = _kombu_envelope(body, headers, queue)
    ours = json.loads(_envelope(body, headers, {"delivery_mode": 2}, routing_key=queue))
    shape = (set(theirs), set(theirs["properties"]), theirs["properties"]["delivery_info"])
    expect(
        shape == (set(ours), set(ours["properties"]), ours["properties"]["delivery_info"]),
        f"kombu's Redis message envelope is now {shape}",
    )
    for key in ("content-encoding", "content-type", "headers"):
        expect(theirs[key] == ours[key], f"kombu's envelope {key} is now {theirs[key]!r}")
    decoded = base64.b64decode(theirs["body"]) if theirs["properties"]["body_encoding"] else b""
    expect(decoded == dumps(body).encode(), "kombu's Redis transport no longer base64s bodies")
    expect(
        kombu_redis.Channel._q_for_pri(StandInQueues(), queue, 0) == queue,  # type: ignore[arg-type]
        "kombu's Redis queue key for priority 0 is no longer the queue's name",
    )


class StandInQueues:
    """Enough of a Redis channel for `_q_for_pri` (no priority steps, the default separator)."""

    priority_steps = kombu_redis.PRIORITY_STEPS
    sep = kombu_redis.Channel.sep

    def priority(self, n: int) -> int:
        return kombu_redis.Channel.priority(self, n)  # type: ignore[arg-type]
