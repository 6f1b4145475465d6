"""TWAP orders end to end: gunicorn API + Celery worker + Celery beat (the trigger evaluation and
the TWAP scheduler, every 0.5 s: the trigger tests' stack) + the localnet, moved through its
admin RPC; the parent and its children followed over their streams and read back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

import pytest

from tests.integration.test_client_cli import run
from tests.integration.test_metrics import scrape, total

# The trigger tests' stack: the live one with a Celery beat (its fixture, found here by name).
from tests.integration.test_trigger_orders import move, triggering_stack  # noqa: F401
from tests.support.clients import request, stream
from tests.support.watchers import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.usefixtures("triggering_stack"),
]

SLOT_S = 0.4


def submit(stack, **body) -> str:
    order = {"type": "twap", "tokenIn": "SOL", "tokenOut": "USDC", "slippageBps": 300, **body}
    response = request("POST", f"{stack.base_url}/api/orders/execute", order)
    assert response.status == 202, response.body
    return response.body["orderId"]


def get_order(stack, order_id) -> dict:
    response = request("GET", f"{stack.base_url}/api/orders/{order_id}")
    assert response.status == 200, response.body
    return response.body


def follow(stack, order_id, timeout_s=60):
    return stream(f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, timeout_s)


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_twap_runs_its_slices_on_schedule_and_adds_them_up_exactly(live_stack):
    stack = live_stack
    move(stack, "150")
    before, _ = scrape(stack.base_url)
    parent_id = submit(stack, amount="0.300000001", slices=3, intervalS=2)
    result = follow(stack, parent_id)
    assert result.statuses[-1] == "confirmed", stack.logs()
    assert set(result.statuses[:-1]) == {"pending"}
    schedule = result.events[0]["data"]["twap"]
    assert schedule == {
        "slices": 3,
        "intervalS": 2,
        "sliceAmount": "0.100000001",
        "lastSliceInS": 4,
    }
    started = [s for e in result.events for s in e["data"].get("twap", {}).get("started", [])]
    assert [s["sliceIndex"] for s in started] == [0, 1, 2]
    final = result.events[-1]["data"]
    assert (final["amountIn"], final["twap"]["remaining"]) == ("0.300000001", "0")

    parent = get_order(stack, parent_id)
    assert (parent["type"], parent["status"], parent["waiting"]) == ("twap", "confirmed", False)
    assert (parent["slices"], parent["intervalS"]) == (3, 2)
    children = parent["twap"]["children"]
    assert [c["sliceIndex"] for c in children] == [0, 1, 2]
    assert [c["amount"] for c in children] == ["0.100000001", "0.1", "0.1"]
    assert sum(Decimal(c["amount"]) for c in children) == Decimal("0.300000001")  # exactly
    assert {c["status"] for c in children} == {"confirmed"}
    assert len({c["txHash"] for c in children}) == 3
    filled_out = sum(Decimal(c["amountOut"]) for c in children)
    assert parent["twap"]["filled"]["amountIn"] == "0.300000001"
    assert Decimal(parent["twap"]["filled"]["amountOut"]) == filled_out
    assert Decimal(parent["amountOut"]) == filled_out
    price = Decimal(parent["twap"]["averagePrice"])
    assert price == (filled_out / Decimal("0.300000001")).quantize(Decimal("1e-12"), "ROUND_DOWN")
    assert parent["twap"]["nextSliceAt"] is None
    after, _ = scrape(stack.base_url)  # counted per type, its slices by outcome

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("order_engine_orders_submitted_total", type="twap") == 1
    assert delta("order_engine_orders_finished_total", type="twap", status="confirmed") == 1
    assert delta("order_engine_twap_slices_total", outcome="started") == 3

    accepted = at(result.events[0]["at"])
    for child in children:
        child_order = get_order(stack, child["orderId"])
        assert (child_order["parentId"], child_order["type"]) == (parent_id, "market")
        child_stream = follow(stack, child["orderId"], 10)
        assert child_stream.statuses == ["pending", "routing", "building", "submitted", "confirmed"]
        due = accepted + 2 * child["sliceIndex"]
        assert at(child_stream.events[0]["data"]["dueAt"]) == pytest.approx(due, abs=0.002)
        lag = at(child_stream.events[1]["at"]) - due
        print(f"\nslice {child['sliceIndex']}: routing {lag * 1000:+.0f} ms from its due time")
        assert -0.05 < lag < 5 * SLOT_S  # one slot on a quiet machine (the benchmark's p99)


def test_cancelling_a_twap_cancels_the_slices_not_built_and_starts_no_more(live_stack):
    stack = live_stack
    move(stack, "150")
    parent_id = submit(stack, amount="0.4", slices=4, intervalS=3)

    def first_slice_done() -> bool:
        children = get_order(stack, parent_id)["twap"]["children"]
        return bool(children) and children[0]["status"] == "confirmed"

    wait_until(first_slice_done, 20, "the first slice to fill")
    response = request("DELETE", f"{stack.base_url}/api/orders/{parent_id}")
    assert response.status == 200, response.body
    assert response.body["status"] == "cancelled"
    time.sleep(7)  # past two more slices' due times
    parent = get_order(stack, parent_id)
    assert parent["status"] == "cancelled"
    assert [e["status"] for e in parent["events"]][-1] == "cancelled"
    children = parent["twap"]["children"]
    assert [c["sliceIndex"] for c in children] in ([0], [0, 1])  # 1 if started ahead of its time
    assert children[0]["status"] == "confirmed"
    assert all(c["status"] in {"confirmed", "cancelled"} for c in children)
    assert parent["twap"]["filled"]["amountIn"] == "0.1"
    assert Decimal(parent["twap"]["remaining"]) >= Decimal("0.3")


def test_a_slice_the_limit_holds_back_waits_for_the_next_interval(live_stack):
    stack = live_stack
    move(stack, "150")
    parent_id = submit(stack, amount="0.3", slices=3, intervalS=3, limitPrice="200")
    with ThreadPoolExecutor(max_workers=1) as pool:
        followed = pool.submit(follow, stack, parent_id, 60)
        held = wait_until(
            lambda: [
                e for e in get_order(stack, parent_id)["events"] if "heldBack" in e["data"]["twap"]
            ],
            10,
            "the first slice to be held back",
        )
        assert held[0]["data"]["twap"]["heldBack"][0]["sliceIndex"] == 0
        assert get_order(stack, parent_id)["twap"]["children"] == []
        move(stack, "260")  # above the limit: the next interval starts slices 0 and 1
        result = followed.result(timeout=60)
    assert result.statuses[-1] == "confirmed", (result.events[-1], stack.logs())
    starts = [e["data"]["twap"].get("started", []) for e in result.events[1:]]
    indexes = [[s["sliceIndex"] for s in step] for step in starts if step]
    assert indexes[0] == [0, 1]
    assert indexes[1:] == [[2]]
    for child in get_order(stack, parent_id)["twap"]["children"]:
        events = get_order(stack, child["orderId"])["events"]
        building = next(e["data"] for e in events if e["status"] == "building")
        assert Decimal(building["minAmountOut"]) >= Decimal(child["amount"]) * 200
        assert Decimal(child["amountOut"]) >= Decimal(child["amount"]) * 200


def test_a_twap_whose_limit_is_never_met_ends_failed_with_all_of_it_left(live_stack):
    stack = live_stack
    move(stack, "150")
    parent_id = submit(stack, amount="0.2", slices=2, intervalS=1, limitPrice="1000")
    result = follow(stack, parent_id, 30)
    assert result.statuses[-1] == "failed"
    # It ends once its last slice was due and held back, not before.
    assert at(result.events[-1]["at"]) >= at(result.events[0]["at"]) + 1
    error = result.events[-1]["data"]["error"]
    assert error["code"] == "TWAP_NOT_FILLED"
    assert "2 held back by its limitPrice" in error["message"]
    parent = get_order(stack, parent_id)
    assert parent["twap"]["children"] == []
    assert (parent["twap"]["remaining"], parent["error"]["code"]) == ("0.2", "TWAP_NOT_FILLED")


def test_the_client_submits_a_twap_and_follows_it_to_the_end(live_stack):
    stack = live_stack
    move(stack, "150")
    done = run(
        stack,
        "submit", "SOL", "USDC", "0.2", "--type", "twap", "--slices", "2", "--interval", "1",
        "--slippage", "300", "--watch",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 slices of 0.1, every 1 s" in done.stdout
    assert "started slice 0" in done.stdout
    assert "confirmed: 2 slices, 0.2 in" in done.stdout
