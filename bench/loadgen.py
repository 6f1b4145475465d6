"""HTTP load generators. They run in their own processes (see `bench.procs`), never in the
process that samples the servers, and every loop is bounded by a count and a deadline.

Open loop: request i is due at start + i/rate whatever happened to earlier ones, and its
latency is measured from that due time, so a slow server shows as latency instead of silently
lowering the offered rate (the coordinated-omission trap of closed-loop tools like wrk).
Closed loop: `concurrency` clients send back to back for a duration; its rate is the
saturation throughput.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.httpclient import HOST, NotSent, Pool

ENGINE_PATH = "/api/orders/execute"
BASELINE_PATH = "/bench/baseline"
REQUEST_TIMEOUT_S = 30.0
SEND_GRACE_S = 2.0  # a request still waiting for a connection this long after the window: unsent
START_DELAY_S = 0.2
NOT_SENT, NO_ANSWER = -1, 0  # statuses recorded instead of an HTTP status


def order_body(tag: str, index: int, fields: dict[str, Any] | None = None) -> bytes:
    """A real, valid market order: a tiny SOL->USDC swap, the amount a decimal string;
    `fields` change it (`{"type": "limit", "limitPrice": "…"}`)."""
    return json.dumps(
        {
            "type": "market",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amount": "0.01",
            "slippageBps": 100,
            "clientOrderId": f"{tag}-{index}",
            **(fields or {}),
        },
        separators=(",", ":"),
    ).encode()


def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Offer `rate` req/s for `duration_s`; one record per request (see `_record`)."""
    return asyncio.run(_open_loop(spec))


def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` back-to-back clients for `duration_s`, or until `count` requests."""
    return asyncio.run(_closed_loop(spec))


async def _open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    pool = Pool(spec["port"], spec["connections"], spec.get("host", HOST))
    loop = asyncio.get_running_loop()
    total = int(spec["rate"] * spec["duration_s"])
    start = loop.time() + START_DELAY_S
    send_by = start + spec["duration_s"] + SEND_GRACE_S
    records: list[list[Any]] = []
    pending = set()
    for index in range(total):
        due = start + index / spec["rate"]
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_one(pool, spec, index, start, due, records, send_by))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=SEND_GRACE_S + REQUEST_TIMEOUT_S + 5)
    pool.close()
    return {"records": records, "offered": total, "elapsed_s": loop.time() - start}


async def _closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    pool = Pool(spec["port"], spec["concurrency"], spec.get("host", HOST))
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + spec["duration_s"]
    records: list[list[Any]] = []
    counter = iter(range(spec.get("count") or 10**9))

    async def client() -> None:
        for index in counter:
            if loop.time() >= deadline:
                return
            await _one(pool, spec, index, start, loop.time(), records, None)

    await asyncio.gather(*(client() for _ in range(spec["concurrency"])))
    pool.close()
    return {"records": records, "elapsed_s": loop.time() - start}


async def _one(
    pool: Pool,
    spec: dict[str, Any],
    index: int,
    start: float,
    due: float,
    records: list[list[Any]],
    send_by: float | None,
) -> None:
    """Send one request; record [due offset s, latency ms, status, orderId, reply wall time].

    Latency runs from the due time, so it includes any wait for a free connection.
    """
    loop = asyncio.get_running_loop()
    path = spec["path"]
    body = order_body(spec["tag"], index, spec.get("order")) if path == ENGINE_PATH else b"{}"
    status, order_id = NO_ANSWER, None
    wait_s = None if send_by is None else max(0.0, send_by - loop.time())
    try:
        response = await pool.request(
            "POST", path, body, wait_s=wait_s, timeout_s=REQUEST_TIMEOUT_S
        )
        status = response.status
        if status == 202:
            order_id = json.loads(response.body)["orderId"]
    except NotSent:
        status = NOT_SENT
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        status = NO_ANSWER  # connection error or timeout; its latency is still recorded
    latency_ms = (loop.time() - due) * 1000
    records.append([round(due - start, 4), round(latency_ms, 3), status, order_id, time.time()])
