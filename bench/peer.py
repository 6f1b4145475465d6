"""The peer load (`--preset peer`): the side-by-side measurement's load, as one client.

One process posts `orders` market orders back to back over `connections` kept-alive HTTP
connections (closed loop: each connection sends its next order as soon as the last one was
answered) and, as each 202 arrives, opens one WebSocket for that order and follows it to its
terminal event. It finishes when every stream has ended or at the deadline.

A stream is exact when it received every event once, seq 1, 2, 3, … in order, and ended with
the terminal one: the events the API replays from history on connect and those it pushes
live must join without a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.loadgen import ENGINE_PATH, REQUEST_TIMEOUT_S, NotSent, Pool, order_body
from bench.wsclient import Subscriber

HANDSHAKES_IN_FLIGHT = 64


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_run(spec))


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pool = Pool(spec["port"], spec["connections"])
    deadline = time.monotonic() + spec["deadline_s"]
    handshakes = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
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
            status, order_id = 0, None
            try:
                response = await pool.request(
                    "POST",
                    ENGINE_PATH,
                    order_body(spec["tag"], index),
                    wait_s=None,
                    timeout_s=REQUEST_TIMEOUT_S,
                )
                status = response.status
                if status == 202:
                    order_id = json.loads(response.body)["orderId"]
            except NotSent:
                status = -1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
            latency_ms = round((loop.time() - sent) * 1000, 3)
            posts.append([sent_wall, latency_ms, status, order_id, time.time()])
            if order_id is not None:
                subscriber = Subscriber(spec["port"], order_id)
                subscribers.append(subscriber)
                streams.append(asyncio.create_task(subscriber.run(handshakes, deadline)))

    await asyncio.gather(*(client() for _ in range(spec["connections"])))
    posted = time.time()
    pool.close()
    if streams:
        await asyncio.wait(streams, timeout=max(0.1, deadline - time.monotonic()) + 5)
    for task in streams:
        task.cancel()
    return {
        "started": started,
        "posted": posted,
        "finished": time.time(),
        "posts": posts,
        "subscribers": [s.record for s in subscribers],
    }
