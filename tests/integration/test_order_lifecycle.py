"""Market orders end to end: gunicorn API + Celery worker processes + PostgreSQL + Redis."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from order_engine.ops.launch import rpc
from tests.support.clients import order_body, request, stream
from tests.support.invariants import HAPPY_PATH
from tests.support.watchers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def submit(stack, **overrides) -> str:
    response = request("POST", f"{stack.base_url}/api/orders/execute", order_body(**overrides))
    assert response.status == 202, response.body
    return response.body["orderId"]


def get_order(stack, order_id):
    return request("GET", f"{stack.base_url}/api/orders/{order_id}").body


def wait_terminal(stack, order_id, timeout_s=30):
    return wait_until(
        lambda: (o := get_order(stack, order_id))["status"] in {"confirmed", "failed"} and o,
        timeout_s,
        f"order {order_id} to finish",
    )


def assert_contiguous(events):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_concurrent_rest_and_websocket_orders_all_confirm_with_full_streams(live_stack):
    ws_url = f"{live_stack.ws_url}/api/orders/execute"

    def via_rest(n: int):
        order_id = submit(live_stack, amount=f"0.{n + 10}")
        return stream(f"{ws_url}?orderId={order_id}")

    def via_websocket(n: int):
        return stream(ws_url, first_message=order_body(amount=f"1.{n}"))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=25) as pool:
        rest = list(pool.map(via_rest, range(20)))
        sockets = list(pool.map(via_websocket, range(5)))
    elapsed = time.monotonic() - started
    for result in rest + sockets:
        assert result.statuses == HAPPY_PATH, live_stack.logs()
        assert_contiguous(result.events)
        assert result.close_code == 1000
        assert len({e["orderId"] for e in result.events}) == 1
    for result in rest + sockets:
        building, confirmed = result.events[2]["data"], result.events[-1]["data"]
        # Filled at or above the minimum, and no more than the quote plus the market's drift.
        assert Decimal(building["minAmountOut"]) <= Decimal(confirmed["amountOut"])
        assert Decimal(confirmed["amountOut"]) <= Decimal(building["quotedAmountOut"]) * 2
        assert confirmed["txHash"] == building["txHash"]
    print(f"\n25 orders confirmed in {elapsed:.2f}s ({25 / elapsed:.1f} orders/s)")


def test_subscriber_mid_flight_and_after_confirmation_get_the_whole_history_once(live_stack):
    order_id = submit(live_stack)
    wait_until(
        lambda: get_order(live_stack, order_id)["status"] == "submitted",
        10,
        "the order to be submitted",
        every_s=0.01,
    )
    mid_flight = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}")
    late = stream(f"{live_stack.ws_url}/api/orders/execute/ws?orderId={order_id}")
    for result in (mid_flight, late):
        assert result.statuses == HAPPY_PATH
        assert_contiguous(result.events)
    assert mid_flight.events == late.events


def test_transient_failure_twice_confirms_on_the_third_attempt(live_stack):
    tag = f"transient-2-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "rpc_unavailable", "rpc_unavailable")
    order_id = submit(live_stack, clientOrderId=tag)
    result = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}")
    assert result.statuses == [
        "pending",
        "routing",
        "building",
        "pending",
        "routing",
        "building",
        "pending",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    retries = [e for e in result.events if e["status"] == "pending" and e["seq"] > 1]
    assert [r["data"]["error"]["code"] for r in retries] == ["RPC_UNAVAILABLE"] * 2
    assert all(r["data"]["error"]["retryable"] and r["data"]["nextAttemptAt"] for r in retries)
    assert result.events[-1]["attempt"] == 3
    assert get_order(live_stack, order_id)["attempts"] == 3


def test_transient_failure_three_times_fails_once_with_the_reason_stored(live_stack):
    tag = f"transient-3-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "rpc_unavailable", "rpc_unavailable", "rpc_unavailable")
    order_id = submit(live_stack, clientOrderId=tag)
    result = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}")
    assert result.statuses.count("failed") == 1
    assert result.statuses[-1] == "failed"
    failed = result.events[-1]["data"]
    # One truth: the event and the order carry the same final code; the cause rides along.
    assert failed["error"]["code"] == "ATTEMPTS_EXHAUSTED"
    assert failed["error"]["retryable"] is False
    assert failed["error"]["lastError"]["code"] == "RPC_UNAVAILABLE"
    assert failed["attempts"] == 3
    order = get_order(live_stack, order_id)
    assert order["status"] == "failed"
    assert (order["error"]["code"], order["error"]["retryable"]) == ("ATTEMPTS_EXHAUSTED", False)
    assert "gave up after 3 attempts" in order["error"]["message"]
    assert "RPC_UNAVAILABLE" in order["error"]["message"]


def test_a_passing_price_spike_is_requoted_once_and_fills(live_stack):
    tag = f"spike-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "price_jump")
    # 100 bps: far below the 500 bps spike, far above what the market drifts between the
    # quote and the re-quote (~10 bps), so only the spike can make the swap revert. Public: a
    # protected swap's bundle would fail instead (test_landing.py).
    order_id = submit(live_stack, clientOrderId=tag, slippageBps=100, mevProtection=False)
    order = wait_terminal(live_stack, order_id)
    assert order["status"] == "confirmed"
    assert order["attempts"] == 2
    retry = [e for e in order["events"] if e["status"] == "pending" and e["seq"] > 1]
    assert len(retry) == 1
    assert retry[0]["data"]["error"]["code"] == "SLIPPAGE_EXCEEDED"
    assert retry[0]["data"]["requote"]["clientMinimum"]
    minimum = [
        Decimal(e["data"]["minAmountOut"]) for e in order["events"] if e["status"] == "building"
    ]
    assert minimum[1] >= minimum[0]  # the re-quote never lowers the client's floor


def test_a_lasting_slippage_breach_fails_after_at_most_one_requote(live_stack):
    tag = f"slippage-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "price_jump", "price_jump", "price_jump")
    order_id = submit(live_stack, clientOrderId=tag, slippageBps=100, mevProtection=False)
    order = wait_terminal(live_stack, order_id)
    assert order["status"] == "failed"
    assert order["error"]["code"] == "SLIPPAGE_EXCEEDED"
    assert order["error"]["retryable"] is False
    assert order["attempts"] == 2
    assert [e["status"] for e in order["events"]].count("failed") == 1


def test_twenty_concurrent_requests_with_one_key_create_one_order(live_stack):
    key = f"idem-{uuid.uuid4()}"

    def post(_):
        return request(
            "POST",
            f"{live_stack.base_url}/api/orders/execute",
            order_body(),
            headers={"Idempotency-Key": key},
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))
    assert {r.status for r in responses} == {202}
    assert len({r.body["orderId"] for r in responses}) == 1
    order = wait_terminal(live_stack, responses[0].body["orderId"])
    assert order["status"] == "confirmed"
    assert order["attempts"] == 1
    different = request(
        "POST",
        f"{live_stack.base_url}/api/orders/execute",
        order_body(amount="0.5"),
        headers={"Idempotency-Key": key},
    )
    assert different.status == 422


def test_websocket_errors_come_as_a_message_then_a_close_code(live_stack):
    base = f"{live_stack.ws_url}/api/orders/execute"
    malformed = stream(f"{base}?orderId=not-a-uuid")
    assert malformed.close_code == 4400
    assert malformed.messages[0]["errors"]["orderId"]
    unknown = stream(f"{base}?orderId={uuid.uuid4()}")
    assert unknown.close_code == 4404
    assert unknown.messages[0]["code"] == 4404
    bad_body = stream(base, first_message=json.dumps(order_body(amount="-3")))
    assert bad_body.close_code == 4400
    assert "amount" in bad_body.messages[0]["errors"]
    not_json = stream(base, first_message="hello")
    assert not_json.close_code == 4400
    alias_without_id = stream(f"{base}/ws")
    assert alias_without_id.close_code == 4400
    assert alias_without_id.messages[0]["errors"] == {"orderId": ["Required."]}
    assert "None" not in alias_without_id.messages[0]["description"]


def landed_transactions(stack, memo: str) -> list[tuple[str, str]]:
    """(signature, landed | failed) of every transaction of the localnet's ledger for a memo."""
    entries = rpc(stack.settings["SOLANA_RPC_URL"], "localnet_ledger", [{"memo": memo}])
    return [(e["signature"], e["status"]) for e in entries]


def test_a_lost_send_response_is_recovered_from_the_chain_not_sent_again(live_stack):
    tag = f"lost-response-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "lost_response")
    order_id = submit(live_stack, clientOrderId=tag)
    result = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}")
    assert result.statuses[-1] == "confirmed"
    assert result.statuses.count("confirmed") == 1
    assert_contiguous(result.events)
    ledger = landed_transactions(live_stack, tag)
    assert [status for _sig, status in ledger] == ["landed"]
    assert result.events[-1]["data"]["txHash"] == ledger[0][0]


def test_the_tx_hash_is_a_signed_transaction_the_chain_confirmed_with_the_recorded_fill(
    live_stack,
):
    from solders.signature import Signature

    tag = f"on-chain-{uuid.uuid4()}"
    order_id = submit(live_stack, clientOrderId=tag, tokenIn="USDC", tokenOut="SOL", amount="75")
    order = wait_terminal(live_stack, order_id)
    assert order["status"] == "confirmed", order
    tx_hash = order["events"][-1]["data"]["txHash"]
    Signature.from_string(tx_hash)  # a 64-byte ed25519 signature in base58
    url = live_stack.settings["SOLANA_RPC_URL"]
    (status,) = rpc(url, "getSignatureStatuses", [[tx_hash]])["value"]
    assert status["err"] is None
    assert status["confirmationStatus"] in {"confirmed", "finalized"}
    (entry,) = rpc(url, "localnet_ledger", [{"memo": tag}])
    assert entry["signature"] == tx_hash
    sol = Decimal(entry["amountOut"]).scaleb(-9)  # lamports paid out (unwrapped SOL)
    assert Decimal(order["events"][-1]["data"]["amountOut"]) == sol


def test_a_client_can_resume_a_stream_after_a_seq(live_stack):
    order_id = submit(live_stack)
    wait_terminal(live_stack, order_id)
    resumed = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}&afterSeq=3")
    assert resumed.seqs == [4, 5]
    assert resumed.close_code == 1000


def test_orders_alike_to_the_byte_each_get_their_own_transaction(live_stack):
    # One client id, one pair, one amount, sent together: built within one slot, their
    # transactions would be the same bytes (the memo is the client's id). Each order must
    # still get a transaction of its own, at once, not after a lease runs out.
    tag = f"twin-{uuid.uuid4().hex[:8]}"

    def post(_):
        return submit(live_stack, clientOrderId=tag, amount="0.31")

    with ThreadPoolExecutor(max_workers=6) as pool:
        order_ids = list(pool.map(post, range(6)))
    orders = [wait_terminal(live_stack, order_id, timeout_s=30) for order_id in order_ids]
    assert {o["status"] for o in orders} == {"confirmed"}, live_stack.logs()
    assert len({o["txHash"] for o in orders}) == 6
