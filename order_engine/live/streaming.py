"""Live order events for WebSocket clients: one Redis subscription per process, fanned out.

Each API process holds a single subscription (the `order-events` channel, where every event
is published) read by one background thread, which hands each event to the local subscribers
of its order and skips the others without parsing them. A socket therefore
costs a queue, not a Redis connection (docs/performance.md: one connection carries ~50k
messages/s).

Delivery contract (docs/design.md): a client receives every event of its order exactly once, in
`seq` order. Pub/sub is at-most-once, so the stream registers its subscription *before* reading
the history from PostgreSQL, drops anything at or below the last `seq` sent, fills any gap from
the database, and re-reads the database after a reconnect of the subscription or a quiet spell.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis
import redis.client
from sqlalchemy.exc import SQLAlchemyError

from order_engine.infra.process import PROCESS
from order_engine.live.events import EVENTS_CHANNEL, is_terminal, published_events

log = logging.getLogger(__name__)


# Set when this process is asked to stop (see gunicorn_conf.py): open streams close with 1001.
shutting_down = threading.Event()

# What a socket waits for between events: an event, a wake-up, or this long at most. Each
# wait that ends empty costs a greenlet switch and a pass of the socket's loop: at 0.5 s that
# was 4,000 a second for 2,000 idle sockets, most of an API process's CPU while they waited.
# Whatever must be noticed at once wakes the sockets instead (`EventHub.wake_all`: a
# reconnected subscription, a shutdown); what this still bounds is how soon a socket whose
# client went away quietly lets go of its slot.
STREAM_TICK_S = 5.0


class HubUnavailable(Exception):
    """The process could not subscribe to Redis in time."""


# Put in a subscription's queue to end its socket's wait with nothing to send.
_WAKE: dict[str, Any] = {}


class Subscription:
    def __init__(self, order_id: str, generation: int) -> None:
        self.order_id = order_id
        self.generation = generation
        self.queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def get(self, timeout_s: float) -> dict[str, Any] | None:
        """The next event, or None after `timeout_s` or a wake-up."""
        try:
            payload = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return None if payload is _WAKE else payload

    def ready(self) -> list[dict[str, Any]]:
        """The events queued already, without waiting (a wake-up among them stays queued)."""
        ready: list[dict[str, Any]] = []
        while True:
            try:
                payload = self.queue.get_nowait()
            except queue.Empty:
                return ready
            if payload is _WAKE:
                self.queue.put(_WAKE)
                return ready
            ready.append(payload)

    def wake(self) -> None:
        self.queue.put(_WAKE)


# The hub pings Redis when the subscription is quiet and counts it lost when nothing (message
# or pong) has come back for HUB_SILENCE_S: a frozen Redis keeps the TCP connection open, so
# only silence reveals it.
HUB_PING_INTERVAL_S = 1
HUB_SILENCE_S = 3.0


class _TrackedPubSub(redis.client.PubSub):
    """A PubSub that reports every (re)connection: redis-py re-subscribes silently after a
    drop, and whatever was published meanwhile is lost, so subscribers must re-read history.
    It also records when Redis last said anything, health-check pongs included."""

    def __init__(self, *args: Any, on_connected: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_connected = on_connected
        self.heard_at = time.monotonic()

    def on_connect(self, connection: Any) -> None:
        super().on_connect(connection)
        self.heard_at = time.monotonic()
        self._on_connected()

    def is_health_check_response(self, response: Any) -> bool:
        # Called on every response read, pongs included (which get_message then swallows).
        if response is not None:
            self.heard_at = time.monotonic()
        return super().is_health_check_response(response)


class EventHub:
    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_keepalive=True,
            socket_timeout=2,
            socket_connect_timeout=1,
            health_check_interval=HUB_PING_INTERVAL_S,
        )
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._ready = threading.Event()
        self.generation = 0
        threading.Thread(target=self._run, name="event-hub", daemon=True).start()

    @contextmanager
    def subscribe(self, order_id: str, timeout_s: float = 2.0) -> Iterator[Subscription]:
        if not self._ready.wait(timeout_s):
            raise HubUnavailable("Redis pub/sub is unavailable")
        subscription = Subscription(order_id, self.generation)
        with self._lock:
            self._subscribers[order_id].add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                subscribers = self._subscribers.get(order_id)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._subscribers[order_id]

    def _connected(self) -> None:
        with self._lock:
            self.generation += 1
        self.wake_all()  # every socket re-reads what the gap may have lost, now

    def wake_all(self) -> None:
        """End every socket's wait now, so that it looks at what changed (a reconnected
        subscription, a shutdown) instead of noticing within STREAM_TICK_S."""
        with self._lock:
            subscriptions = [s for group in self._subscribers.values() for s in group]
        for subscription in subscriptions:
            subscription.wake()

    def _run(self) -> None:
        delay_s = 0.1
        while True:
            pubsub = _TrackedPubSub(
                self._client.connection_pool,
                ignore_subscribe_messages=True,
                on_connected=self._connected,
            )
            try:
                pubsub.subscribe(EVENTS_CHANNEL)
                self._ready.set()
                delay_s = 0.1
                while True:
                    message = pubsub.get_message(timeout=HUB_PING_INTERVAL_S / 2)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["data"])
                    if time.monotonic() - pubsub.heard_at > HUB_SILENCE_S:
                        raise redis.TimeoutError(f"no answer from Redis in {HUB_SILENCE_S}s")
            except redis.RedisError as exc:
                self._ready.clear()
                log.warning("event hub lost Redis (%s); reconnecting in %.1fs", exc, delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            finally:
                with suppress(redis.RedisError):
                    pubsub.close()

    def _dispatch(self, message: str) -> None:
        with self._lock:
            followed = [
                (event, list(self._subscribers[order_id]))
                for order_id, event in published_events(message)
                if order_id in self._subscribers
            ]
        for event, subscribers in followed:
            payload = json.loads(event)
            for subscription in subscribers:
                subscription.queue.put(payload)


def get_hub(redis_url: str) -> EventHub:
    """The hub of this process (created after fork, on first use: its thread does not survive
    a fork)."""
    return PROCESS.get("hub", redis_url, lambda: EventHub(redis_url))


def stop_streams() -> None:
    """This process is stopping: every open stream closes (1001) at once."""
    shutting_down.set()
    for hub in PROCESS.held("hub"):
        hub.wake_all()


class OrderStream:
    """Yields an order's events exactly once, in seq order, ending with the terminal one."""

    def __init__(
        self,
        subscription: Subscription,
        history: Callable[[int], list[dict[str, Any]]],
        hub: EventHub,
        resync_after_s: float = 20.0,
        tick_s: float = STREAM_TICK_S,
        after_seq: int = 0,
        first_history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.subscription = subscription
        self.history = history
        self.hub = hub
        self.resync_after_s = resync_after_s
        self.tick_s = tick_s
        self.last_seq = after_seq
        self.finished = False
        self._replayed = False
        # The history the caller already read after subscribing (it answered whether the order
        # exists); the first batch replays it instead of reading it again.
        self._first_history = first_history
        self._resync_at = self._next_resync()

    def _next_resync(self) -> float:
        # Jittered (½ to 1½ × resync_after_s): sockets opened together, as a burst of orders
        # opens them, would otherwise all re-read the database in the same instant.
        return time.monotonic() + self.resync_after_s * random.uniform(0.5, 1.5)

    def next_batch(self) -> list[dict[str, Any]]:
        """Events to send now (possibly none); call until `finished`."""
        if not self._replayed:
            self._replayed = True
            first, self._first_history = self._first_history, None
            return self._accept(first if first is not None else self.history(self.last_seq))
        while True:
            # Never past the next re-read: it happens on time however quiet the order is.
            wait_s = min(self.tick_s, max(self._resync_at - time.monotonic(), 0.0))
            payload = self.subscription.get(wait_s)
            if payload is not None:
                # Events queued behind it go out with it (one write to the socket); by seq, so
                # a late duplicate counts once.
                fresh = {
                    p["seq"]: p
                    for p in (payload, *self.subscription.ready())
                    if p["seq"] > self.last_seq
                }
                if not fresh:
                    continue  # already sent (replayed from history, or late duplicates)
                if max(fresh) - self.last_seq == len(fresh):  # last_seq + 1 … max, no gap
                    return self._accept(list(fresh.values()))
                return self._accept(self._reread())  # a gap: fill from the DB
            reconnected = self.subscription.generation != self.hub.generation
            if reconnected or time.monotonic() >= self._resync_at:
                self.subscription.generation = self.hub.generation
                return self._accept(self._reread())
            return []

    def _reread(self) -> list[dict[str, Any]]:
        """The history after the last event sent. A read that fails (the database slow or
        briefly away) costs this socket nothing but time: nothing is sent out of order, and
        the read is tried again within a second or two."""
        self._resync_at = self._next_resync()
        try:
            return self.history(self.last_seq)
        except SQLAlchemyError as exc:
            log.warning(
                "stream of %s: history read failed (%s); retrying", self.subscription.order_id, exc
            )
            self._resync_at = time.monotonic() + random.uniform(1.0, 2.0)
            return []

    def _accept(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        accepted = []
        for event in sorted(events, key=lambda e: e["seq"]):
            if event["seq"] != self.last_seq + 1:
                continue
            accepted.append(event)
            self.last_seq = event["seq"]
            if is_terminal(event):
                self.finished = True
                break
        if accepted:
            self._resync_at = self._next_resync()
        return accepted
