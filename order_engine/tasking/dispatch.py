"""Send tasks by name, so `order_engine` never imports `workers`.

Called only after the transaction that created or changed the order has committed: a task that
starts before the commit would not see its order (celery docs, "Database transactions").

Intake sends one `execute_order` per order, and kombu's publish path was the largest single
cost after the INSERT: it builds a new `redis.Redis` client for every Redis call of a publish
(research/perf.md §3a: ~22 % of an `apply_async`), once for the task and once more for the
`task-sent` event, through several layers of producer, retry and exchange code. With a Redis
broker and no countdown, `RedisTaskSender` writes the same two messages (Celery builds the task
message itself; the kombu envelopes are written as kombu's Redis transport writes them) with
one long-lived client, in one pipelined round trip: LPUSH to the queue, PUBLISH of the event.
Any other broker, or a delayed task, goes through Celery's `send_task` as before.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Hashable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from celery.events.event import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from flask import current_app
from kombu.utils.json import dumps
from redis.backoff import NoBackoff
from redis.retry import Retry

from order_engine.infra.batching import GroupCommit
from order_engine.infra.process import PROCESS
from order_engine.infra.queues import EVALUATE_TRIGGERS, EXECUTE_ORDER, RECONCILE_ORDERS, is_redis

__all__ = ["EVALUATE_TRIGGERS", "EXECUTE_ORDER", "RECONCILE_ORDERS", "RedisTaskSender"]

# Same bounds as the Celery transport options (tasking.py): a frozen broker fails a send in
# about 2 s instead of holding the request; one immediate retry covers a pooled connection
# that died with a restarted server (kombu's retry_policy below does the same).
BROKER_SOCKET_TIMEOUT_S = 2
BROKER_CONNECT_TIMEOUT_S = 1


def enqueue_execute_order(
    order_id: uuid.UUID, countdown_s: float | None = None, copy: dict[str, Any] | None = None
) -> None:
    """Queue the execution of one order, with intake's `copy` of it if given (task_copy.py).
    Duplicates are harmless: the worker claims the row."""
    celery_app: Celery = current_app.extensions["celery"]
    kwargs: dict[str, Any] = {"order_id": str(order_id)}
    if copy is not None:
        kwargs["order"] = copy
    if countdown_s is None:
        sender = task_sender(celery_app)
        if sender is not None:
            sender.send(EXECUTE_ORDER, kwargs)
            return
    celery_app.send_task(
        EXECUTE_ORDER,
        kwargs=kwargs,
        kwargsrepr=kwargs_repr(kwargs),
        countdown=countdown_s,
        # Fail fast when the broker is down: the order is already committed and the
        # reconciler will queue it, so the client should not wait on broker retries.
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
    )


def kwargs_repr(kwargs: dict[str, Any]) -> str:
    """The task's kwargs as Flower, the worker's log lines and `celery inspect` show them: the
    order's id, and intake's copy only named. Celery would otherwise `saferepr` the copy into
    every message (1 % of the API's CPU) and each "received" line would carry it."""
    return repr(
        {name: "<intake's copy>" if name == "order" else value for name, value in kwargs.items()}
    )


def enqueue_execute_orders(order_ids: list[uuid.UUID]) -> None:
    """Queue the executions of many orders (the trigger engine's batch): one pipelined round
    trip with a Redis broker, else one send each."""
    celery_app: Celery = current_app.extensions["celery"]
    sender = task_sender(celery_app)
    if sender is None:
        for order_id in order_ids:
            enqueue_execute_order(order_id)
        return
    sender.send_many(EXECUTE_ORDER, [{"order_id": str(order_id)} for order_id in order_ids])


def oldest_queued_order() -> uuid.UUID | None:
    """The order of the oldest `execute_order` message still waiting in a Redis broker's queue,
    or None: an empty queue, another broker, a Redis error, another task at the head. The
    queue is FIFO (LPUSH, and BRPOP from the other end), so every order sent after that one
    is still queued behind it."""
    sender = task_sender(current_app.extensions["celery"])
    return None if sender is None else sender.oldest_queued_order()


def broker_is_app_redis() -> bool:
    """Whether the task broker is the Redis server that holds the live order state.

    If that server just failed to answer a publish, a send to it would wait out its own
    timeouts for nothing: intake then leaves the dispatch to the reconciler.
    """
    settings = current_app.config["SETTINGS"]
    broker, app_redis = urlsplit(settings.celery_broker_url), urlsplit(settings.redis_url)
    if not broker.scheme.startswith("redis") or not app_redis.scheme.startswith("redis"):
        return False
    return (broker.hostname, broker.port) == (app_redis.hostname, app_redis.port)


def task_sender(celery_app: Celery) -> RedisTaskSender | None:
    """The direct sender for this Celery app in this process, or None if it cannot be used
    (not a plain Redis broker, a key prefix, priorities or a non-direct route)."""
    return PROCESS.get("task_sender", id(celery_app), lambda: RedisTaskSender.for_app(celery_app))


class RedisTaskSender:
    """Publishes tasks to a Redis broker exactly as Celery + kombu do, in one round trip."""

    def __init__(self, celery_app: Celery, client: redis.Redis, queue: str, db: int) -> None:
        self.app = celery_app
        self.client = client
        self.queue = queue
        self.hostname = anon_nodename()  # Celery's `origin` and event `hostname`
        self.pid = os.getpid()
        self.send_sent_event = bool(celery_app.conf.task_send_sent_event)
        # kombu's fanout topic for the event exchange: keyprefix_fanout + exchange/routing key.
        self.event_topic = f"/{db}.{celery_app.conf.event_exchange}/task.sent"
        self._batches: GroupCommit[tuple[dict[str, Any], str], str] = GroupCommit(
            "tasks", self._send_batch
        )

    @classmethod
    def for_app(cls, celery_app: Celery) -> RedisTaskSender | None:
        conf = celery_app.conf
        options = conf.broker_transport_options or {}
        if not is_redis(conf.broker_url or "") or conf.task_routes.get(EXECUTE_ORDER):
            return None
        if (
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
        return cls(celery_app, client, queue, db)

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
        """See `oldest_queued_order`."""
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
            kwargsrepr=kwargs_repr(kwargs),
            reply_to=reply_to,
            create_sent_event=self.send_sent_event,
            origin=self.hostname,
            ignore_result=None,  # what send_task passes when the caller sets none
        )
        # Direct routing to the default queue goes through the anonymous exchange, as
        # celery/app/amqp.py `send_task_message` does; delivery mode 2 is persistent.
        task_properties = {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": self.queue},
        }
        pipe.lpush(self.queue, _envelope(body, headers, task_properties))
        if sent_event is not None:
            event = Event(
                "task-sent",
                hostname=self.hostname,
                utcoffset=utcoffset(),
                pid=self.pid,
                clock=app.clock.forward(),
                **sent_event,
                queue=self.queue,
                exchange="",
                routing_key=self.queue,
            )
            event_properties = {
                "delivery_mode": 1,
                "delivery_info": {
                    "exchange": app.conf.event_exchange,
                    "routing_key": "task.sent",
                },
            }
            pipe.publish(
                self.event_topic, _envelope(event, {"hostname": self.hostname}, event_properties)
            )
        return task_id


def _envelope(body: Any, headers: dict[str, Any], properties: dict[str, Any]) -> str:
    """A message as kombu's Redis transport stores it: JSON body, base64, one delivery tag."""
    encoded = base64.b64encode(dumps(body).encode()).decode()
    return dumps(
        {
            "body": encoded,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **properties,
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
