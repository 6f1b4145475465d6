"""The soak (`make soak`): thousands of orders through a stack that keeps being broken.

The worker is SIGKILLed at random every few seconds, Redis restarts once with an empty dataset
and PostgreSQL restarts once, while clients keep submitting (retrying with their
Idempotency-Key until accepted, as a real integrator would). At the end it prints orders
accepted, confirmed, failed (by code), lost and executed twice; lost and executed twice must
be 0. Sized by SOAK_ORDERS (default 2000).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import text

from tests.support.clients import order_body
from tests.support.invariants import check_invariants, landed_twice

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.soak]

ORDERS = int(os.environ.get("SOAK_ORDERS", "2000"))
SUBMIT_RATE = float(os.environ.get("SOAK_RATE", "15"))  # orders per second offered


@pytest.mark.timeout(3600)
def test_soak_loses_nothing_and_executes_nothing_twice(make_stack, redis_factory, private_postgres):
    stack = make_stack(
        postgres=private_postgres,
        redis_server=redis_factory(persistent=False),
        concurrency=64,
        DEX_SWAP_LATENCY_MS="300-800",
        LOG_LEVEL="WARNING",
    )
    rng = random.Random(7)
    done = threading.Event()
    accepted: list[str] = []

    def submit_all() -> None:
        for n in range(ORDERS):
            key = f"soak-{uuid.uuid4()}"
            body = order_body(amount=f"0.{rng.randint(10, 99)}", clientOrderId=key)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # retry through outages with the same key
                try:
                    response = stack.post_order(body, key, timeout_s=10)
                except OSError:
                    response = None
                if response is not None and response.status == 202:
                    accepted.append(response.body["orderId"])
                    break
                time.sleep(0.5)
            time.sleep(1 / SUBMIT_RATE)
            if n == ORDERS // 3:
                restart_redis_empty()
            if n == 2 * ORDERS // 3:
                restart_postgres()
        done.set()

    def restart_redis_empty() -> None:
        stack.redis_server.shutdown()
        stack.redis_server.start()  # no persistence: queue, unacked and bindings are gone

    def restart_postgres() -> None:
        private_postgres.stop()
        time.sleep(3)
        private_postgres.start()

    def chaos() -> None:
        kills = 0
        while not done.is_set():
            time.sleep(rng.uniform(3, 8))
            if done.is_set():
                break
            stack.kill("worker", signal.SIGKILL)
            kills += 1
            stack.start_worker(concurrency=64, wait=False)
        print(f"\nworker SIGKILLed {kills} times")

    started = time.monotonic()
    threads = [threading.Thread(target=submit_all), threading.Thread(target=chaos)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.wait_log("worker", " ready.", 60)
    report = check_invariants(stack, terminal_within_s=600)

    with stack.engine.connect() as conn:
        failures = Counter(
            dict(
                conn.execute(
                    text(
                        "SELECT failure_code, count(*) FROM orders WHERE status = 'failed'"
                        " GROUP BY failure_code"
                    )
                ).all()
            )
        )
        unfinished = conn.execute(
            text(
                "SELECT count(*) FROM orders WHERE status NOT IN ('confirmed', 'failed',"
                " 'cancelled')"
            )
        ).scalar_one()
    twice = landed_twice(stack)  # orders with more than one landed swap on the localnet
    print(
        f"soak: {len(accepted)} accepted, {report.by_status.get('confirmed', 0)} confirmed, "
        f"{report.by_status.get('failed', 0)} failed {dict(failures)}, lost {unfinished}, "
        f"executed twice {twice}, in {time.monotonic() - started:.0f}s"
    )
    assert len(accepted) == ORDERS
    assert unfinished == 0
    assert twice == 0
