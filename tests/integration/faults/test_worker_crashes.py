"""Workers dying or stalling mid-order (docs/reliability.md, fault scenarios #1–#4, #8, #11).

The money rule under test: however an executor dies, the order ends terminal with at most one
landed swap, because a take-over asks the chain about the dead executor's signature before
doing anything else.

"In flight" below means: the order recorded its transaction's signature (`tx_hash`), and the
chain's ledger has no landing for it yet. A worker that dies *inside* the send, or a send that
hangs, is the test worker app's doing (`tests.support.crashing_worker`, planned per order with
`Stack.plant_sender_faults`): the product has no such hook.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal

import pytest

from tests.support.clients import unique_tag
from tests.support.invariants import HAPPY_PATH, check_invariants
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

RETRY_PATH = ["pending", "routing", "building", "pending"]
RECEIVED = r"Task orders\.execute_order\[([0-9a-f-]+)\] received"


@pytest.mark.timeout(150)
def test_worker_killed_while_submitted_confirms_once_by_asking_the_chain(make_stack):
    stack = make_stack(DEX_SWAP_LATENCY_MS="2500")
    tag = unique_tag("kill-submitted")
    order_id = stack.submit(clientOrderId=tag)
    stack.watch(order_id)
    stack.wait_status(order_id, "submitted")

    stack.kill("worker")
    sent = stack.order_row(order_id)["tx_hash"]
    assert sent
    assert stack.ledger(tag) == []  # in flight, sender gone
    stack.start_worker()

    check_invariants(stack)
    order = stack.order_row(order_id)
    assert order["status"] == "confirmed"
    assert stack.statuses(order_id) == HAPPY_PATH  # recovered, not retried
    assert (order["attempts"], order["deliveries"]) == (1, 2)  # one attempt, one take-over
    assert [(tx["signature"], tx["status"]) for tx in stack.ledger(tag)] == [(sent, "landed")]
    assert f"order {order_id}: {sent} landed; recording it" in stack.log("worker")
    assert re.search(rf"reconciler re-dispatched 1 stale order.*{order_id}", stack.log("worker"))


@pytest.mark.timeout(150)
def test_pool_child_killed_mid_task_is_requeued_and_lands_one_swap(make_stack):
    # Prefork enforces time limits (soft = TASK_TIME_LIMIT_S - 5): leave room on a busy machine.
    stack = make_stack(
        worker="prefork",
        concurrency=2,
        DEX_SWAP_LATENCY_MS="2000",
        TASK_TIME_LIMIT_S="12",
        ORDER_LEASE_S="13",
        BROKER_VISIBILITY_TIMEOUT_S="26",
    )
    tag = unique_tag("kill-child")
    order_id = stack.submit(clientOrderId=tag)
    stack.watch(order_id)
    stack.wait_status(order_id, "submitted")
    child = stack.executor_pid(order_id)
    assert child in stack.worker_children()

    os.kill(child, signal.SIGKILL)
    stack.wait_log("worker", "WorkerLostError", 20)

    check_invariants(stack)
    assert stack.order_row(order_id)["status"] == "confirmed"
    assert stack.statuses(order_id) == HAPPY_PATH
    assert [tx["status"] for tx in stack.ledger(tag)] == ["landed"]
    # reject_on_worker_lost put the message back at once: the same task id was received twice.
    received = re.findall(RECEIVED, stack.log("worker"))
    assert max(received.count(task_id) for task_id in received) >= 2, stack.log("worker")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_worker_killed_mid_burst_lands_at_most_one_swap_per_order(make_stack):
    """Kill the worker while orders are routing, building and submitted, one of them exactly
    between `building` and the send. Signatures differ per attempt, so it is the engine's claim
    and chain look-ups, not the chain's per-signature dedup, that keep each order to one swap."""
    stack = make_stack(sender_faults=True, DEX_SWAP_LATENCY_MS="1500-2500")
    tags = [unique_tag("burst") for _ in range(6)]
    order_ids = [stack.submit(clientOrderId=tag) for tag in tags]
    stack.wait_status(order_ids[0], "submitted")
    crash_tag = unique_tag("crash-in-building")
    stack.plant_sender_faults(crash_tag, "crash")  # the worker process dies inside the send

    crash_id = stack.submit(clientOrderId=crash_tag)
    assert stack.processes["worker"].wait(20) == 137
    at_kill = {i: stack.order_row(i)["status"] for i in order_ids}
    assert stack.order_row(crash_id)["status"] == "building"
    assert stack.ledger(crash_tag) == []  # it never reached the chain
    assert stack.sender_crashes(crash_tag) == 1
    assert "submitted" in at_kill.values(), at_kill
    stack.start_worker()

    report = check_invariants(stack, terminal_within_s=90)
    assert report.by_status == {"confirmed": 7}, report
    crashed = stack.order_row(crash_id)
    assert stack.statuses(crash_id) == RETRY_PATH + HAPPY_PATH[1:]
    assert crashed["attempts"] == 2
    assert [tx["status"] for tx in stack.ledger(crash_tag)] == ["landed"]
    assert stack.ledger(crash_tag)[0]["signature"] == crashed["tx_hash"]


@pytest.mark.timeout(150)
def test_lost_response_then_worker_killed_still_lands_one_swap(make_stack):
    """The send's response is lost (the chain has the transaction), and the worker dies during
    the retry countdown: the next executor must find the first signature, not send again."""
    stack = make_stack(DEX_SWAP_LATENCY_MS="2500")
    tag = unique_tag("lost-then-kill")
    stack.plant_faults(tag, "lost_response")
    order_id = stack.submit(clientOrderId=tag)
    stack.watch(order_id)
    wait_until(
        lambda: stack.statuses(order_id) == RETRY_PATH, 20, "the retry after the lost response"
    )

    stack.kill("worker")
    first = stack.order_row(order_id)["tx_hash"]
    assert first
    assert stack.ledger(tag) == []  # accepted by the chain, in flight
    stack.start_worker()

    check_invariants(stack)
    order = stack.order_row(order_id)
    assert order["status"] == "confirmed"
    ledger = stack.ledger(tag)
    assert [(tx["signature"], tx["status"]) for tx in ledger] == [(first, "landed")]
    assert order["tx_hash"] == first


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_poison_order_fails_with_deliveries_exhausted_while_others_confirm(make_stack):
    stack = make_stack(
        worker="prefork", concurrency=2, sender_faults=True, ORDER_MAX_DELIVERIES="3"
    )
    tag = unique_tag("poison")
    stack.plant_sender_faults(tag, *["crash"] * 10)  # its sender dies on every send
    poison = stack.submit(clientOrderId=tag)
    others = [stack.submit(amount=f"0.{n + 11}") for n in range(6)]
    stack.watch(poison)

    report = check_invariants(stack, terminal_within_s=120)
    assert report.by_status == {"confirmed": 6, "failed": 1}, report
    order = stack.order_row(poison)
    assert (order["status"], order["failure_code"]) == ("failed", "DELIVERIES_EXHAUSTED")
    assert all(stack.order_row(o)["status"] == "confirmed" for o in others)
    crashes = stack.task_log_count(r"exited with 'exitcode 137'")
    assert crashes >= 2, stack.log("worker")
    assert stack.ledger(tag) == []
    assert stack.sender_crashes(tag) == crashes  # every crash was one send of the poison order
    assert stack.sender_faults_left(tag) == 10 - crashes


@pytest.mark.timeout(180)
def test_a_send_stalled_past_its_lease_does_not_land_a_second_swap(make_stack):
    """§7 #11: the send hangs past the lease (slow RPC, paused process). Here the sender blocks
    inside `send_transaction` (the test worker's `hold`, before the RPC); the reconciler hands
    the order to another executor, which must not put a second transaction on the chain
    alongside the stalled one when that one finally goes through."""
    stack = make_stack(sender_faults=True)
    tag = unique_tag("stalled-send")
    stack.plant_sender_faults(tag, "hold", "hold", "hold")  # every send of it blocks, up to 3
    order_id = stack.submit(clientOrderId=tag)

    stack.wait_log("worker", f"sender hold: {tag}", 20)  # the first send is stuck
    wait_until(
        lambda: stack.order_row(order_id)["deliveries"] >= 2,
        40,
        "the reconciler to hand the expired lease to another executor",
    )
    # Give that executor time to act; an engine that re-sends builds attempt 2 here (its send
    # then blocks too), a correct one waits or re-sends the same signature.
    with contextlib.suppress(AssertionError):
        wait_until(
            lambda: (o := stack.order_row(order_id))["attempts"] >= 2 and o["status"] == "building",
            10,
            "a second attempt to be built",
        )
    stack.release_held_sends()  # the stalled send goes through now, as a slow RPC's eventually does

    check_invariants(stack, terminal_within_s=90)


@pytest.mark.timeout(150)
def test_deliveries_exhausted_on_a_take_over_still_accounts_for_the_landed_swap(make_stack):
    """The poison-order guard must not hide money: an order whose transaction is on the chain
    when its delivery budget runs out has to end with that transaction recorded. (Budget 1
    here so the first take-over exceeds it; with the default 6 it is the 7th delivery.)"""
    stack = make_stack(DEX_SWAP_LATENCY_MS="2500", ORDER_MAX_DELIVERIES="1")
    tag = unique_tag("budget-in-flight")
    order_id = stack.submit(clientOrderId=tag)
    stack.wait_status(order_id, "submitted")

    stack.kill("worker")
    sent = stack.order_row(order_id)["tx_hash"]
    assert sent
    assert stack.ledger(tag) == []  # in flight
    stack.start_worker()

    check_invariants(stack)
    order = stack.order_row(order_id)
    assert order["status"] == "confirmed"
    assert [(tx["signature"], tx["status"]) for tx in stack.ledger(tag)] == [(sent, "landed")]
