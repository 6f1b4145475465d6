"""Limit and sniper orders end to end: gunicorn API + Celery worker + Celery beat (the trigger
engine) + the localnet, moved and launched through its admin RPC; streams followed to the end."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from solders.keypair import Keypair

from order_engine.ops.launch import rpc
from tests.support.clients import request, stream
from tests.support.watchers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]

# Waiting, then triggered: the trigger's quote is the order's `routing`, then the usual lifecycle.
TRIGGERED_PATH = ["pending", "routing", "building", "submitted", "confirmed"]


@pytest.fixture(scope="module")
def triggering_stack(live_stack):
    """The live stack plus a Celery beat, which sends the trigger evaluation every 0.5 s."""
    live_stack.start_beat(overrides={"TRIGGER_INTERVAL_MS": "500"})
    try:
        yield live_stack
    finally:
        live_stack.stop("beat")
        move(live_stack, "150")  # the localnet's reference price, for the tests after these


def move(stack, price: str) -> None:
    rpc(stack.settings["SOLANA_RPC_URL"], "localnet_move", [{"pair": "SOL/USDC", "price": price}])


def submit(stack, body) -> dict:
    response = request("POST", f"{stack.base_url}/api/orders/execute", body)
    assert response.status == 202, response.body
    return response.body


def get_order(stack, order_id) -> dict:
    return request("GET", f"{stack.base_url}/api/orders/{order_id}").body


def test_a_limit_order_waits_then_fills_at_or_better_than_its_limit(triggering_stack):
    stack = triggering_stack
    move(stack, "150")
    body = {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "0.25",
        "limitPrice": "200",
        "slippageBps": 300,
        "expiresAt": "2099-01-01T00:00:00Z",
    }
    response = request("POST", f"{stack.base_url}/api/orders/execute", body)
    assert response.status == 422  # beyond the 30-day horizon
    assert "expiresAt" in response.body["errors"]
    del body["expiresAt"]
    order_id = submit(stack, body)["orderId"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        followed = pool.submit(
            stream, f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, 60
        )
        time.sleep(2)  # a few evaluations: the market (150) is far below the limit (200)
        order = get_order(stack, order_id)
        assert (order["status"], order["waiting"], order["limitPrice"]) == ("pending", True, "200")
        listed = request("GET", f"{stack.base_url}/api/orders?type=limit&status=pending").body
        assert order_id in {o["orderId"] for o in listed["orders"]}
        moved_at = time.monotonic()
        move(stack, "260")
        result = followed.result(timeout=60)
    assert result.statuses == TRIGGERED_PATH, stack.logs()
    first, triggered = result.events[0]["data"], result.events[1]["data"]
    assert first["waitingFor"] == {"limitPrice": "200"}
    assert triggered["triggered"] == {"limitPrice": "200"}
    building, confirmed = result.events[2]["data"], result.events[-1]["data"]
    assert Decimal(building["minAmountOut"]) >= Decimal("50")  # 0.25 × 200
    assert Decimal(confirmed["amountOut"]) >= Decimal("50")
    print(f"\nlimit: moved → confirmed in {time.monotonic() - moved_at:.2f}s")


def test_a_limit_met_at_submission_runs_at_once_and_says_so(triggering_stack):
    stack = triggering_stack
    move(stack, "150")
    body = {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "0.1",
        "limitPrice": "100",
        "slippageBps": 300,
    }
    order_id = submit(stack, body)["orderId"]
    result = stream(f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, 60)
    # No wait for a trigger: routing follows the first event. (The market moved from 260 just
    # before; a quote from the engine's view of the previous slot may slip and be tried again.)
    assert result.statuses[:2] == ["pending", "routing"]
    assert result.statuses[-1] == "confirmed", (result.events[-1]["data"], stack.logs())
    assert result.events[0]["data"]["limitMetAtSubmission"]["limitPrice"] == "100"
    assert Decimal(result.events[-1]["data"]["amountOut"]) >= Decimal("10")


# In `make test-slow`, not CI's `make test-rabbitmq`: right after a 40 % market move, on a
# loaded CI machine with RabbitMQ, its third (unfaulted) swap slipped twice in CI (30 and then
# 100 bps), for a reason not found here. The same behaviour is tested deterministically in
# process (test_execution_recovery.py, ..._at_its_limit_in_process).
@pytest.mark.slow
def test_a_limit_order_whose_swaps_slip_is_tried_again_at_its_limit(triggering_stack):
    """A slippage revert means the quote was stale, not that the limit failed: the order is
    tried again (a market order would get one re-quote, and fail on the second revert)."""
    stack = triggering_stack
    move(stack, "150")
    tag = f"limit-slips-{uuid.uuid4()}"
    stack.plant_faults(tag, "price_jump", "price_jump")
    body = {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "0.1",
        "limitPrice": "100",
        # Far below the planted 500 bps spikes, far above the market's drift between a quote
        # and its landing, so only the spikes make a swap revert (30 bps failed now and then).
        "slippageBps": 100,
        "clientOrderId": tag,
        # Public: its swap reverts on chain (a protected one's bundle fails instead,
        # test_landing.py), which is the policy under test.
        "mevProtection": False,
    }
    order_id = submit(stack, body)["orderId"]
    result = stream(f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, 60)
    assert result.statuses[-1] == "confirmed", (result.events[-1]["data"], stack.logs())
    retries = [e["data"] for e in result.events if e["status"] == "pending" and e["seq"] > 1]
    assert [r["error"]["code"] for r in retries] == ["SLIPPAGE_EXCEEDED"] * 2
    limits = [Decimal(r["requote"]["clientMinimum"]) for r in retries]
    assert limits == [Decimal("10")] * 2  # 0.1 SOL × 100, the limit, not the quote that slipped
    minimums = [
        Decimal(e["data"]["minAmountOut"]) for e in result.events if e["status"] == "building"
    ]
    assert len(minimums) == 3
    assert min(minimums) >= Decimal("10")
    assert Decimal(result.events[-1]["data"]["amountOut"]) >= Decimal("10")


def test_a_cancelled_limit_order_never_executes(triggering_stack):
    stack = triggering_stack
    move(stack, "150")
    body = {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "0.1",
        "limitPrice": "400",
    }
    order_id = submit(stack, body)["orderId"]
    response = request("DELETE", f"{stack.base_url}/api/orders/{order_id}")
    assert response.status == 200, response.body
    move(stack, "450")
    time.sleep(2)
    move(stack, "150")
    order = get_order(stack, order_id)
    assert order["status"] == "cancelled"
    assert [e["status"] for e in order["events"]] == ["pending", "cancelled"]


def test_a_sniper_buys_a_token_seconds_after_its_launch(triggering_stack):
    stack = triggering_stack
    url = stack.settings["SOLANA_RPC_URL"]
    mint = str(Keypair().pubkey())
    refused = request(
        "POST",
        f"{stack.base_url}/api/orders/execute",
        {"type": "sniper", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.1"},
    )
    assert refused.status == 422
    assert "market order" in refused.body["errors"]["tokenOut"][0]
    body = {
        "type": "sniper",
        "tokenIn": "SOL",
        "tokenOut": mint,
        "amount": "0.1",
        "maxPrice": "0.01",
        "slippageBps": 300,
    }
    order_id = submit(stack, body)["orderId"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        followed = pool.submit(
            stream, f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, 60
        )
        time.sleep(1.5)
        assert get_order(stack, order_id)["waiting"] is True
        launched_at = time.monotonic()
        symbol = "S" + uuid.uuid4().hex[:6].upper()
        rpc(
            url,
            "localnet_launch",
            [
                {
                    "mint": mint,
                    "symbol": symbol,
                    "decimals": 6,
                    "quote": "SOL",
                    "liquidity": "50",
                    "price": "0.001",
                    "venue": "raydium",
                }
            ],
        )
        result = followed.result(timeout=60)
    elapsed = time.monotonic() - launched_at
    assert result.statuses == TRIGGERED_PATH, stack.logs()
    assert result.events[0]["data"]["waitingFor"] == {"pool": {"mint": mint}, "maxPrice": "0.01"}
    assert Decimal(result.events[-1]["data"]["amountOut"]) >= Decimal("10")  # 0.1 / 0.01
    assert elapsed < 10
    print(f"\nsniper: launch → confirmed in {elapsed:.2f}s")
    # Now that the mint has a pool, a sniper on it is a market order's business.
    again = wait_until(
        lambda: (
            (r := request("POST", f"{stack.base_url}/api/orders/execute", body)).status == 422 and r
        ),
        5,
        "the API to see the new pool",
    )
    assert "already has a pool" in again.body["errors"]["tokenOut"][0]
