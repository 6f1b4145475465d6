"""Operators find an order's tasks and retries in Flower by its order id: a real
Flower, started as `make flower` starts it, watching the live stack's worker."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
import uuid

import pytest

from order_engine.ops.launch import free_port, start_process, stop_process
from tests.support.clients import order_body, request
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


def flower_tasks(port: int, search: str) -> dict:
    query = urllib.parse.urlencode({"search": search})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks?{query}", timeout=5) as r:
        return json.load(r)


def test_an_orders_tasks_and_retries_are_found_in_flower_by_its_id(live_stack, tmp_path):
    import sys

    port = free_port()
    env = {
        **os.environ,
        **live_stack.settings,
        "FLOWER_PORT": str(port),
        "FLOWER_UNAUTHENTICATED_API": "true",  # the test reads Flower's API; loopback only
    }
    flower = start_process(
        [sys.executable, "-m", "order_engine.ops.cli", "flower"], env, tmp_path / "flower.log"
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(up, 60, "Flower to answer")

        def submit() -> str:
            tag = f"flower-{uuid.uuid4()}"
            live_stack.plant_faults(tag, "rpc_unavailable")
            body = order_body(clientOrderId=tag)
            return request("POST", f"{live_stack.base_url}/api/orders/execute", body).body[
                "orderId"
            ]

        def found(order_id: str) -> dict | None:
            tasks = flower_tasks(port, f"kwargs:order_id={order_id}")
            done = [t for t in tasks.values() if t["state"] == "SUCCESS"]
            return tasks if done else None

        # Workers send task events once Flower has turned them on (its enable_events, every
        # few seconds): an order run before that is not in Flower. Submit until one is.
        tasks, order_id = None, ""
        for _ in range(6):
            order_id = submit()
            try:
                tasks = wait_until(lambda o=order_id: found(o), 10, f"Flower to show {order_id}")
                break
            except AssertionError:
                continue
        assert tasks is not None, "Flower never showed an order's task"
        (task,) = tasks.values()  # one task; its retry keeps the id
        assert task["name"] == "orders.execute_order"
        assert order_id in task["kwargs"]
        assert "accountId" not in task["kwargs"]  # intake's copy of the order is never dumped
        assert task["retries"] == 1  # the failed first attempt, retried once
        assert "confirmed" in task["result"]
        # the bare id finds it too (free-text search over name, args and kwargs)
        assert set(flower_tasks(port, order_id)) == set(tasks)
    finally:
        stop_process(flower)
