"""The trigger engine under faults: schedulers and workers killed around a trigger, two
schedulers at once, Redis emptied. The money rules: every limit order that the market crosses
executes exactly once, and one that it does not cross keeps waiting; an OCO bracket never
executes both legs, whatever the market does after its trigger.

An order is "triggered" by one compare-and-set in PostgreSQL (`waiting` → false, status
`routing`, an event whose data says `triggered`); its `execute_order` task is sent after that
commit. So a
crash between the two, a lost message or two schedulers racing must all end in one execution:
the reconciler re-dispatches a triggered order nobody runs, and the claim runs it once.
"""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import text

from tests.support.clients import order_body, unique_tag
from tests.support.invariants import check_invariants
from tests.support.stack import Stack
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

# The localnet's reference price of SOL in USDC at the start of each test, and a market far
# enough above the limits that every venue's quote for these sizes meets them.
MARKET, LIMIT, CROSSED = "150", "200", "260"


def move(stack: Stack, price: str) -> None:
    stack.localnet.call("localnet_move", {"pair": "SOL/USDC", "price": price})


def submit_limits(stack: Stack, count: int, limit: str = LIMIT) -> list[str]:
    """`count` limit orders selling SOL for USDC at `limit`, each watched over a WebSocket."""
    order_ids = []
    for n in range(count):
        body = order_body(
            type="limit",
            limitPrice=limit,
            amount=f"0.{n + 11}",
            clientOrderId=unique_tag("limit"),
        )
        order_ids.append(stack.submit(**body))
    for order_id in order_ids:
        stack.watch(order_id)
    return order_ids


def wait_waiting(stack: Stack, order_ids: list[str], waiting: bool, timeout_s: float = 30) -> None:
    def settled() -> bool:
        rows = [stack.order_row(order_id) for order_id in order_ids]
        return all(row["waiting"] is waiting for row in rows)

    wait_until(settled, timeout_s, f"{len(order_ids)} orders to have waiting={waiting}")


def trigger_events(stack: Stack) -> dict[str, int]:
    """How many `triggered` events each order has (the compare-and-set's trace)."""
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT order_id::text, count(*) FROM order_events "
                "WHERE data ? 'triggered' GROUP BY order_id"
            )
        ).all()
    return {order_id: count for order_id, count in rows}


def landed_per_order(stack: Stack, order_ids: list[str]) -> dict[str, int]:
    memos = {stack.order_row(o)["client_order_id"]: o for o in order_ids}
    counts: dict[str, int] = dict.fromkeys(order_ids, 0)
    for tx in stack.ledger():
        if tx["status"] == "landed" and tx["memo"] in memos:
            counts[memos[tx["memo"]]] += 1
    return counts


def confirmed_once(stack: Stack, order_ids: list[str]) -> None:
    """Assert the invariants of the whole database, then that each order triggered once,
    followed the triggered path once and landed one swap."""
    check_invariants(stack, terminal_within_s=90)
    assert trigger_events(stack) == dict.fromkeys(order_ids, 1)
    assert landed_per_order(stack, order_ids) == dict.fromkeys(order_ids, 1)
    for order_id in order_ids:
        statuses = stack.statuses(order_id)
        # A take-over after a kill resumes the same attempt; a retry adds pending/routing/...
        assert statuses[:2] == ["pending", "routing"], (order_id, statuses)
        assert statuses[-1] == "confirmed", (order_id, statuses)


@pytest.mark.timeout(180)
def test_two_schedulers_and_a_worker_killed_after_the_trigger_execute_each_order_once(
    make_stack,
):
    stack = make_stack(DEX_SWAP_LATENCY_MS="1500")
    move(stack, MARKET)
    order_ids = submit_limits(stack, 6)
    wait_waiting(stack, order_ids, True)
    stack.start_beat("beat-2")  # a second scheduler: both evaluate every 0.5 s

    move(stack, CROSSED)
    wait_until(
        lambda: any(stack.order_row(o)["status"] == "submitted" for o in order_ids),
        30,
        "a triggered order to be submitted",
    )
    # The worker dies with swaps in flight and triggered orders prefetched; one scheduler
    # dies with it. The other keeps running the reconciler.
    stack.kill("worker", signal.SIGKILL)
    stack.kill("beat", signal.SIGKILL)
    stack.start_worker()

    confirmed_once(stack, order_ids)
    # Both schedulers were sending evaluations when the market crossed the limits.
    assert "orders.evaluate_triggers" in stack.log("beat")
    assert "orders.evaluate_triggers" in stack.log("beat-2")


@pytest.mark.timeout(180)
def test_triggered_orders_and_waiting_ones_survive_redis_being_emptied(make_stack, redis_factory):
    stack = make_stack(redis_server=redis_factory(persistent=False), worker=None)
    move(stack, MARKET)
    crossed = submit_limits(stack, 4)
    far = submit_limits(stack, 1, limit="1000")  # not crossed by the first move
    wait_waiting(stack, crossed + far, True)

    # Only the control queue is consumed (the trigger evaluations, the reconciler): the
    # triggered orders' tasks sit in the broker's `orders` queue ...
    stack.start_worker("control", queues="control")
    move(stack, CROSSED)
    wait_waiting(stack, crossed, False)
    assert stack.order_row(far[0])["waiting"] is True
    broker = stack.redis_server.client(1)
    wait_until(lambda: broker.llen("orders") == len(crossed), 10, "the tasks to be queued")
    # ... which Redis loses, with every key it held.
    stack.redis_server.shutdown()
    stack.redis_server.start()
    stack.start_worker()

    wait_until(
        lambda: all(stack.order_row(o)["status"] == "confirmed" for o in crossed),
        90,
        "the triggered orders to confirm after Redis was emptied",
    )
    redispatched = stack.log("control") + stack.log("worker")
    assert "reconciler re-dispatched" in redispatched
    assert stack.order_row(far[0])["waiting"] is True  # still waiting: its limit was not met
    move(stack, "1100")

    confirmed_once(stack, crossed + far)


def submit_brackets(stack: Stack, count: int, take: str, loss: str) -> list[str]:
    """`count` brackets selling SOL for USDC, each watched over a WebSocket."""
    order_ids = []
    for n in range(count):
        body = order_body(
            type="oco",
            takeProfit={"limitPrice": take},
            stopLoss={"triggerPrice": loss},
            amount=f"0.{n + 11}",
            clientOrderId=unique_tag("oco"),
        )
        order_ids.append(stack.submit(**body))
    for order_id in order_ids:
        stack.watch(order_id)
    return order_ids


def one_leg_each(stack: Stack, order_ids: list[str]) -> dict[str, str]:
    """Assert the invariants of the whole database, then that each bracket landed one swap and
    ended confirmed on the leg its last trigger took; the legs, by order."""
    check_invariants(stack, terminal_within_s=90)
    assert landed_per_order(stack, order_ids) == dict.fromkeys(order_ids, 1)
    legs = {}
    for order_id in order_ids:
        row = stack.order_row(order_id)
        assert row["status"] == "confirmed", (order_id, stack.statuses(order_id))
        legs[order_id] = row["trigger_leg"]
        with stack.engine.connect() as conn:
            triggers = (
                conn.execute(
                    text(
                        "SELECT data ->> 'leg' FROM order_events WHERE order_id = :id "
                        "AND data ? 'triggered' ORDER BY seq"
                    ),
                    {"id": order_id},
                )
                .scalars()
                .all()
            )
        # A trigger the worker's own quote no longer met put the bracket back to waiting on
        # both legs (no swap for it); the swap that landed is the last trigger's leg.
        assert triggers[-1:] == [legs[order_id]], (order_id, triggers)
    return legs


@pytest.mark.timeout(240)
def test_no_bracket_executes_both_legs_across_worker_and_scheduler_kills(make_stack):
    stack = make_stack(DEX_SWAP_LATENCY_MS="1500")
    move(stack, MARKET)
    order_ids = submit_brackets(stack, 6, take=LIMIT, loss="100")
    wait_waiting(stack, order_ids, True)
    stack.start_beat("beat-2")  # two schedulers evaluate every 0.5 s

    move(stack, CROSSED)  # every take-profit is met
    wait_until(
        lambda: any(stack.order_row(o)["status"] == "submitted" for o in order_ids),
        30,
        "a bracket's take-profit to be submitted",
    )
    # The worker dies with swaps in flight and triggered brackets prefetched, one scheduler
    # with it; then the market falls through every stop-loss before a worker runs again.
    stack.kill("worker", signal.SIGKILL)
    stack.kill("beat", signal.SIGKILL)
    move(stack, "80")
    stack.start_worker()

    # A take-profit swap that landed before the fall stands; one that the fall made revert, or
    # one never built, put its bracket back to waiting, and its stop-loss sold it.
    legs = one_leg_each(stack, order_ids)
    assert set(legs.values()) <= {"takeProfit", "stopLoss"}
    print(f"\nbrackets after the kills and the fall: {sorted(legs.values())}")
    move(stack, MARKET)


@pytest.mark.timeout(240)
def test_triggered_brackets_survive_redis_being_emptied_and_run_one_leg(make_stack, redis_factory):
    stack = make_stack(redis_server=redis_factory(persistent=False), worker=None)
    move(stack, MARKET)
    order_ids = submit_brackets(stack, 4, take=LIMIT, loss="100")
    wait_waiting(stack, order_ids, True)

    # Only the control queue is consumed: the triggered brackets' tasks sit in the broker ...
    stack.start_worker("control", queues="control")
    move(stack, "90")  # every stop-loss is met
    wait_waiting(stack, order_ids, False)
    broker = stack.redis_server.client(1)
    wait_until(lambda: broker.llen("orders") == len(order_ids), 10, "the tasks to be queued")
    # ... which Redis loses; meanwhile the market runs up through every take-profit.
    stack.redis_server.shutdown()
    stack.redis_server.start()
    move(stack, CROSSED)
    stack.start_worker()

    legs = one_leg_each(stack, order_ids)
    # The stop-losses executed as stops (no floor): the take-profit the market met after
    # them could not run, their orders having left the waiting ones.
    assert set(legs.values()) == {"stopLoss"}
    assert "reconciler re-dispatched" in stack.log("control") + stack.log("worker")
    move(stack, MARKET)
