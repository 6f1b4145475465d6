"""TWAP orders under faults: workers, schedulers and the API killed around a slice, two
schedulers at once, Redis emptied with the slices' tasks in it. The money rule: no slice runs
twice, and every slice of a parent that nothing holds back fills once.

A slice is a child order row, unique per (parent, slice index), created in the transaction
whose compare-and-set moved its parent; its task is sent after that commit. So two schedulers,
a scheduler killed between its commit and its send, or a lost task all end in one execution of
each slice: the reconciler re-sends a child nobody runs, and the claim runs it once.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import text

from tests.support.clients import unique_tag
from tests.support.invariants import check_invariants
from tests.support.stack import Stack
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


def submit_twaps(stack: Stack, count: int, slices: int, interval_s: int) -> list[str]:
    """`count` TWAPs selling SOL for USDC, each watched over a WebSocket."""
    parents = []
    for n in range(count):
        body = {
            "type": "twap",
            "amount": f"0.{n + 3}",
            "slices": slices,
            "intervalS": interval_s,
            "clientOrderId": unique_tag("twap"),
        }
        parents.append(stack.submit(**body))
    for parent_id in parents:
        stack.watch(parent_id)
    return parents


def children(stack: Stack, parent_id: str) -> list[dict]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM orders WHERE parent_id = :p ORDER BY slice_index"),
            {"p": parent_id},
        ).mappings()
        return [dict(row) for row in rows]


def started_per_step(stack: Stack, parent_id: str) -> list[list[int]]:
    """The slice indexes each of the parent's steps started."""
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT data -> 'twap' -> 'started' FROM order_events WHERE order_id = :p "
                "AND data -> 'twap' ? 'started' ORDER BY seq"
            ),
            {"p": parent_id},
        ).scalars()
        return [[s["sliceIndex"] for s in started] for started in rows]


def landed_per_child(stack: Stack, parents: list[str]) -> dict[str, int]:
    kids = [str(kid["id"]) for parent in parents for kid in children(stack, parent)]
    counts = dict.fromkeys(kids, 0)
    for tx in stack.ledger():
        if tx["status"] == "landed" and tx["memo"] in counts:
            counts[tx["memo"]] += 1
    return counts


def filled_once(stack: Stack, parents: list[str], slices: int) -> None:
    """The invariants over the whole database (I6: one child per slice), then: every parent
    confirmed with one child per slice, and one landed swap per child."""
    check_invariants(stack, terminal_within_s=120)
    for parent_id in parents:
        assert stack.order_row(parent_id)["status"] == "confirmed", stack.statuses(parent_id)
        kids = children(stack, parent_id)
        assert [kid["slice_index"] for kid in kids] == list(range(slices))
        assert {kid["status"] for kid in kids} == {"confirmed"}
    assert set(landed_per_child(stack, parents).values()) == {1}


@pytest.mark.timeout(240)
def test_no_slice_runs_twice_across_killed_workers_schedulers_and_api(make_stack):
    stack = make_stack(DEX_SWAP_LATENCY_MS="800")
    stack.start_beat("beat-2")  # a second scheduler: both step the parents every 0.5 s
    slices = 5
    parents = submit_twaps(stack, 2, slices=slices, interval_s=2)
    wait_until(
        lambda: any(kid["status"] == "submitted" for kid in children(stack, parents[0])),
        30,
        "a first slice to be submitted",
    )
    # The worker dies with a slice's swap in flight and the next slices' tasks held for their
    # countdown; both schedulers die with it, and the API.
    for name in ("worker", "beat", "beat-2", "api"):
        stack.kill(name, signal.SIGKILL)
    time.sleep(4.5)  # two more slices fall due while nothing runs
    stack.start_api()
    stack.start_worker()
    stack.start_beat()  # catches up: the overdue slices start at once, once each
    filled_once(stack, parents, slices)
    for parent_id in parents:
        steps = started_per_step(stack, parent_id)
        assert sorted(index for step in steps for index in step) == list(range(slices))
        assert max(len(step) for step in steps) >= 2, steps  # the overdue ones together


@pytest.mark.timeout(180)
def test_slices_survive_redis_being_emptied_with_their_tasks_in_it(make_stack, redis_factory):
    stack = make_stack(redis_server=redis_factory(persistent=False), worker=None)
    slices = 3
    # Only the control queue is consumed (the scheduler, the reconciler): the slices' tasks
    # sit in the broker's `orders` queue ...
    stack.start_worker("control", queues="control")
    parents = submit_twaps(stack, 1, slices=slices, interval_s=1)
    wait_until(lambda: len(children(stack, parents[0])) == slices, 20, "every slice to be created")
    broker = stack.redis_server.client(1)
    wait_until(lambda: broker.llen("orders") >= 1, 10, "the slices' tasks to be queued")
    # ... which Redis loses, with every key it held.
    stack.redis_server.shutdown()
    stack.redis_server.start()
    stack.start_worker()
    filled_once(stack, parents, slices)
    assert "reconciler re-dispatched" in stack.log("control") + stack.log("worker")
