"""Retries and duplicate deliveries (docs/reliability.md, fault scenarios #6, #7, #9, #17)."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from tests.support.clients import order_body, unique_tag
from tests.support.invariants import HAPPY_PATH, check_invariants
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

RETRIED = r"Task orders\.execute_order\[([0-9a-f-]+)\] retry: Retry in"
SKIPPED = r"Task orders\.execute_order\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: 'skipped'"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_transient_failures_retry_up_to_three_attempts_as_celery_sees_them(make_stack):
    stack = make_stack()
    twice, thrice = unique_tag("transient-2"), unique_tag("transient-3")
    stack.plant_faults(twice, *["rpc_unavailable"] * 2)
    stack.plant_faults(thrice, *["rpc_unavailable"] * 3)
    recovers = stack.submit(clientOrderId=twice)
    gives_up = stack.submit(clientOrderId=thrice)
    stack.watch(recovers)
    stack.watch(gives_up)

    check_invariants(stack)
    attempt = ["routing", "building", "pending"]
    assert stack.statuses(recovers) == ["pending", *attempt * 2, *HAPPY_PATH[1:]]
    assert stack.order_row(recovers)["attempts"] == 3
    failed = stack.order_row(gives_up)
    assert stack.statuses(gives_up) == ["pending", *attempt * 2, "routing", "building", "failed"]
    # One truth: the order's code is the final one; the failed event keeps the cause.
    assert (failed["attempts"], failed["failure_code"]) == (3, "ATTEMPTS_EXHAUSTED")
    with stack.engine.connect() as conn:
        final = conn.execute(
            text("SELECT data FROM order_events WHERE order_id = :id ORDER BY seq DESC LIMIT 1"),
            {"id": gives_up},
        ).scalar_one()
    assert final["error"]["lastError"]["code"] == "RPC_UNAVAILABLE"
    # Celery's own view (what Flower shows): two retries of each task, then success.
    retries = Counter(re.findall(RETRIED, stack.log("worker")))
    assert sorted(retries.values()) == [2, 2], stack.log("worker")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_duplicate_deliveries_before_and_during_a_run_change_nothing(make_stack):
    stack = make_stack(DEX_SWAP_LATENCY_MS="2000")
    tag = unique_tag("duplicates")
    order_id = stack.submit(clientOrderId=tag)
    stack.watch(order_id)
    with stack.broker_app() as producer:
        for _ in range(3):  # racing the first claim
            producer.send_task("orders.execute_order", kwargs={"order_id": order_id})
        stack.wait_status(order_id, "submitted")
        for _ in range(3):  # while the first run waits for its transaction
            producer.send_task("orders.execute_order", kwargs={"order_id": order_id})

    wait_until(
        lambda: len(re.findall(SKIPPED, stack.log("worker"))) >= 6,
        20,
        "the six duplicates to be skipped",
    )
    check_invariants(stack)
    order = stack.order_row(order_id)
    assert stack.statuses(order_id) == HAPPY_PATH  # no extra event
    assert (order["attempts"], order["deliveries"]) == (1, 1)
    assert [tx["status"] for tx in stack.ledger(tag)] == ["landed"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_twenty_concurrent_posts_with_one_key_create_and_execute_one_order(make_stack):
    stack = make_stack()
    key = unique_tag("idem")
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: stack.post_order(order_body(), key), range(20)))

    assert {r.status for r in responses} == {202}
    assert len({r.body["orderId"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    report = check_invariants(stack, expect_keys={key})
    assert report.by_status == {"confirmed": 1}
    assert stack.order_row(responses[0].body["orderId"])["attempts"] == 1
