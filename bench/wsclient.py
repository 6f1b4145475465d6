"""WebSocket clients: the live-updates measurement's subscribers (many sockets per process on
asyncio), the peer load's client, and a Redis tap beside them.

Each subscriber follows one order over `GET /api/orders/execute?orderId=<id>` and records
every event with the wall time it arrived; the lag of an event is that time minus the event's
`at` (set by the worker when it writes the transition; same machine, same clock). The process
reports when all its sockets have connected, so the benchmark can start the worker only then:
every event after `pending` is then a live one, pushed from the worker's publish.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from bench.loadgen import ENGINE_PATH, HOST, Pool, order_body, post

CONNECT_TIMEOUT_S = 30.0
HANDSHAKES_IN_FLIGHT = 32
# Once stopped, the tap reads on until its socket has been quiet this long.
TAP_QUIET_S = 0.2


def subscribe_many(spec: dict[str, Any], connected_event: Any) -> dict[str, Any]:
    """Follow every order in `spec["order_ids"]`; set `connected_event` once all are open."""
    return asyncio.run(_subscribe_many(spec, connected_event))


async def _subscribe_many(spec: dict[str, Any], connected_event: Any) -> dict[str, Any]:
    deadline = time.monotonic() + spec["deadline_s"]
    handshakes = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    subscribers = [Subscriber(spec["port"], order_id) for order_id in spec["order_ids"]]
    tasks = [asyncio.create_task(s.run(handshakes, deadline)) for s in subscribers]
    await asyncio.wait([s.opened for s in subscribers], timeout=CONNECT_TIMEOUT_S * 2)
    connected_event.set()
    await _until(tasks, deadline)
    return {"subscribers": [s.record for s in subscribers]}


async def _until(tasks: list[asyncio.Task[None]], deadline: float) -> None:
    """Wait for the streams until the deadline (and 5 s), then cancel what is left."""
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic()) + 5)
    for task in tasks:
        task.cancel()


class Subscriber:
    """One socket following one order; `record` is what the report reads."""

    def __init__(self, port: int, order_id: str, target: str | None = None) -> None:
        self.port, self.order_id = port, order_id
        self.target = target or f"/api/orders/execute?orderId={order_id}"
        self.opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.record: dict[str, Any] = {"orderId": order_id, "connected": False}
        self.record |= {"connectMs": None, "openedAt": None, "closeCode": None, "error": None}
        self.record["events"] = []  # [seq, status, at, received wall time]

    async def run(self, handshakes: asyncio.Semaphore, deadline: float) -> None:
        writer = None
        try:
            async with handshakes:
                reader, writer, ws, leftover = await asyncio.wait_for(
                    self._handshake(), CONNECT_TIMEOUT_S
                )
            await self._read(reader, writer, ws, leftover, deadline)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.record["error"] = self.record["error"] or f"{type(exc).__name__}: {exc}"[:200]
        finally:
            if not self.opened.done():
                self.opened.set_result(False)
            if writer is not None:
                writer.close()

    async def _handshake(self) -> tuple[Any, Any, WSConnection, list[Any]]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(HOST, self.port)
        ws = WSConnection(ConnectionType.CLIENT)
        key = os.environ.get("BENCH_API_KEY", "")  # set by bench/stack.py
        auth = [("Authorization", f"Bearer {key}")] if key else []
        request = Request(host=f"{HOST}:{self.port}", target=self.target, extra_headers=auth)
        writer.write(ws.send(request))
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            ws.receive_data(data)
            events = list(ws.events())
            for index, event in enumerate(events):
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"handshake rejected: HTTP {event.status_code}")
                if isinstance(event, AcceptConnection):
                    connect_ms = round((time.monotonic() - started) * 1000, 2)
                    self.record |= {"connected": True, "connectMs": connect_ms}
                    self.record["openedAt"] = time.time()
                    self.opened.set_result(True)
                    return reader, writer, ws, events[index + 1 :]

    async def _read(self, reader, writer, ws: WSConnection, events: list, deadline: float) -> None:
        parts: list[str] = []
        while True:
            for event in events:
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        self._on_message("".join(parts))
                        parts.clear()
                elif isinstance(event, Ping):
                    writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.record["closeCode"] = event.code
                    writer.write(ws.send(event.response()))
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.record["error"] = "still open at the deadline"
                return
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if not data:
                self.record["error"] = "connection closed without a close frame"
                return
            ws.receive_data(data)
            events = list(ws.events())

    def _on_message(self, text: str) -> None:
        received = time.time()
        message = json.loads(text)
        if "seq" in message:
            self.record["events"].append(
                [message["seq"], message["status"], message["at"], received]
            )
        else:
            self.record["error"] = f"server message: {message.get('description', message)}"[:200]


# -- the peer load (`--preset peer`) -------------------------------------------------------------
#
# One process posts `orders` market orders back to back over `connections` kept-alive HTTP
# connections (closed loop: each connection sends its next order as soon as the last one was
# answered) and, as each 202 arrives, opens one WebSocket for that order and follows it to its
# terminal event. It finishes when every stream has ended or at the deadline. A stream is exact
# when it received every event once, seq 1, 2, 3, … in order, ending with the terminal one: the
# events the API replays from history on connect and those it pushes live must join without a
# gap or a duplicate.

PEER_HANDSHAKES_IN_FLIGHT = 64


def peer(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_peer(spec))


async def _peer(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pool = Pool(spec["port"], spec["connections"])
    deadline = time.monotonic() + spec["deadline_s"]
    handshakes = asyncio.Semaphore(PEER_HANDSHAKES_IN_FLIGHT)
    counter = iter(range(spec["orders"]))
    posts: list[list[Any]] = []  # [sent wall time, latency ms, status, orderId, reply wall time]
    subscribers: list[Subscriber] = []
    streams: list[asyncio.Task[None]] = []
    started = time.time()

    async def client() -> None:
        for index in counter:
            if time.monotonic() >= deadline:
                return
            sent_wall, sent = time.time(), loop.time()
            status, order_id = await post(pool, ENGINE_PATH, order_body(spec["tag"], index), None)
            latency_ms = round((loop.time() - sent) * 1000, 3)
            posts.append([sent_wall, latency_ms, status, order_id, time.time()])
            if order_id is not None:
                subscriber = Subscriber(spec["port"], order_id)
                subscribers.append(subscriber)
                streams.append(asyncio.create_task(subscriber.run(handshakes, deadline)))

    await asyncio.gather(*(client() for _ in range(spec["connections"])))
    posted = time.time()
    pool.close()
    await _until(streams, deadline)
    return {
        "started": started,
        "posted": posted,
        "finished": time.time(),
        "posts": posts,
        "subscribers": [s.record for s in subscribers],
    }


def tap(spec: dict[str, Any], ready_event: Any, stop_event: Any) -> dict[str, Any]:
    """A bare Redis subscriber beside the sockets: its receipt time splits an event's lag into
    `at` → Redis (the worker commits, publishes) and Redis → socket (the API's side, judged). It
    only stores each message and its arrival time (parsed after), so it keeps up; it keeps the
    events of its orders (pub/sub ignores the database number), and stops once `stop_event` is
    set and its socket is quiet; after an error it returns what it has, with the error."""
    import redis

    from order_engine.live.events import published_events

    raw: list[tuple[bytes, float]] = []
    result: dict[str, Any] = {}
    deadline = time.monotonic() + spec["deadline_s"]
    pubsub = redis.Redis.from_url(spec["redis_url"]).pubsub()
    try:
        pubsub.subscribe(spec["channel"])
        confirm_by = time.monotonic() + CONNECT_TIMEOUT_S
        while (m := pubsub.get_message(timeout=1.0)) is None or m["type"] != "subscribe":
            if time.monotonic() > confirm_by:  # once confirmed, no event is missed
                raise TimeoutError("the subscription was not confirmed")
        ready_event.set()
        while time.monotonic() < deadline:
            stopping = stop_event.is_set()
            message = pubsub.get_message(timeout=TAP_QUIET_S if stopping else 0.5)
            if message is not None:
                raw.append((message["data"], time.time()))
            elif stopping:
                break
    except Exception as exc:  # noqa: BLE001 - keep what was received; the report shows why
        result["error"] = f"Redis tap stopped early: {type(exc).__name__}: {exc}"[:300]
    finally:
        pubsub.close()
    wanted = set(spec["order_ids"])
    result["received"] = [
        [order_id, json.loads(line)["seq"], received_at]
        for data, received_at in raw
        for order_id, line in published_events(data.decode() if isinstance(data, bytes) else data)
        if order_id in wanted
    ]
    return result
