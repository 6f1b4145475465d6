"""The broker restarting or down (docs/reliability.md, fault scenarios #12–#14).

Redis is the broker and the live-status channel, never the source of truth: whatever it loses,
the orders in PostgreSQL must all finish, each exactly once.
"""

from __future__ import annotations

import time

import pytest

from tests.support.clients import order_body, unique_tag
from tests.support.invariants import check_invariants

pytestmark = pytest.mark.integration

BROKER_LOST = "Connection to broker lost"


@pytest.mark.timeout(150)
def test_redis_restart_with_aof_keeps_the_queue_and_finishes_every_order_once(make_stack):
    # No scheduler: the orders must come back through the persisted queue itself, not through
    # the reconciler. One worker thread, so the others wait in the broker's list.
    stack = make_stack(beat=False, concurrency=1, DEX_SWAP_LATENCY_MS="1500")
    in_flight = stack.submit(clientOrderId=unique_tag("aof-in-flight"))
    stack.wait_status(in_flight, "submitted")
    queued = [stack.submit(amount=f"0.{n + 11}") for n in range(4)]
    for order_id in [in_flight, *queued]:
        stack.watch(order_id)
    with stack.redis_server.client(1) as broker:
        assert broker.llen("orders") >= 3

    stack.redis_server.shutdown()
    stack.wait_log("worker", BROKER_LOST, 20)
    stack.redis_server.start()

    report = check_invariants(stack, terminal_within_s=60)
    assert report.by_status == {"confirmed": 5}, report
    assert all(stack.order_row(o)["attempts"] == 1 for o in [in_flight, *queued])
    # Consumption resumed after the reconnect (the #10205 class of stalls): a fresh order runs.
    canary = stack.submit()
    check_invariants(stack, terminal_within_s=20)
    assert stack.order_row(canary)["status"] == "confirmed"


@pytest.mark.timeout(150)
def test_redis_restart_without_persistence_is_covered_by_the_reconciler(make_stack, redis_factory):
    stack = make_stack(
        redis_server=redis_factory(persistent=False), concurrency=1, DEX_SWAP_LATENCY_MS="1500"
    )
    in_flight = stack.submit(clientOrderId=unique_tag("empty-in-flight"))
    stack.wait_status(in_flight, "submitted")
    queued = [stack.submit(amount=f"0.{n + 11}") for n in range(4)]
    for order_id in [in_flight, *queued]:
        stack.watch(order_id)

    stack.redis_server.shutdown()
    stack.wait_log("worker", BROKER_LOST, 20)
    stack.redis_server.start()  # empty: queue, unacked messages and bindings are gone
    # Sent before the worker re-declares its queue: Kombu may drop these without an error.
    late = [stack.submit(amount=f"0.{n + 21}") for n in range(2)]

    report = check_invariants(stack, terminal_within_s=90)
    assert report.by_status == {"confirmed": 7}, report
    assert "reconciler re-dispatched" in stack.log("worker")
    assert all(stack.order_row(o)["attempts"] == 1 for o in [in_flight, *queued, *late])


@pytest.mark.timeout(120)
def test_redis_down_at_post_accepts_and_the_order_runs_once_when_it_returns(make_stack):
    stack = make_stack()
    key = unique_tag("redis-down")
    stack.redis_server.shutdown()

    started = time.monotonic()
    first = stack.post_order(order_body(), key)
    took_s = time.monotonic() - started
    replay = stack.post_order(order_body(), key)

    # The row is the outbox (docs/design.md); the client gets its 202 and the reconciler dispatches.
    assert first.status == 202, first.body
    assert took_s < 10, f"POST took {took_s:.1f}s with the broker down"
    order_id = first.body["orderId"]
    assert (replay.status, replay.body["orderId"]) == (202, order_id)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert stack.order_row(order_id)["attempts"] == 0  # nothing ran without a broker

    stack.redis_server.start()
    check_invariants(stack, expect_keys={key})
    order = stack.order_row(order_id)
    assert (order["status"], order["attempts"]) == ("confirmed", 1)
    print(f"\nPOST with Redis down answered {first.status} in {took_s:.2f}s")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_worker_keeps_consuming_after_its_broker_pubsub_connection_is_killed(make_stack):
    """§7 #20 seen from the worker: Redis drops pub/sub clients (CLIENT KILL, or the
    `client-output-buffer-limit pubsub` of a slow subscriber). Kombu promises to reconnect a
    stale consumer within brpop_timeout + 2 × health_check_interval (51 s with 25 s).

    This was a known failure, marked xfail: the worker's event loop blocked for good in kombu's
    Channel._receive_one once redis-py re-subscribed the remote-control connection. It passes
    on this code (three runs) and on the code before this round (one run; the broker transport
    keeping one Redis client per channel, order_engine/tasking/overrides/, is the likely
    reason, not proven), so it now guards the behaviour instead of expecting the failure."""
    stack = make_stack()
    first = stack.submit()
    stack.wait_terminal([first], 20)
    with stack.redis_server.client(1) as broker:
        assert broker.client_kill_filter(_type="pubsub") >= 1

    canary = stack.submit()
    check_invariants(stack, terminal_within_s=75)
    assert stack.order_row(canary)["status"] == "confirmed"
