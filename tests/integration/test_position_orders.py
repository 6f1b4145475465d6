"""Stops, OCO brackets and trailing stops end to end: gunicorn API + Celery worker + Celery beat
(the trigger engine) + the localnet, moved through its admin RPC; streams followed to the end."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.integration.test_metrics import scrape, value
from tests.integration.test_trigger_orders import (
    TRIGGERED_PATH,
    get_order,
    move,
    submit,
    triggering_stack,
)
from tests.support.clients import StreamResult, stream
from tests.support.watchers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]

__all__ = ["triggering_stack"]  # the fixture, shared with the limit and sniper orders' tests

SELL = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.25", "slippageBps": 300}


def follow(stack, body: dict, wait_s: float, then_move: list[str]) -> tuple[str, StreamResult]:
    """Submit `body` with the market at 150, check it waits for `wait_s`, then move the market
    through `then_move` (each step held for two evaluations) and follow the order to its end."""
    move(stack, "150")
    order_id = submit(stack, body)["orderId"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        followed = pool.submit(
            stream, f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, 90
        )
        time.sleep(wait_s)
        assert get_order(stack, order_id)["waiting"] is True
        moved_at = time.monotonic()
        for price in then_move:
            move(stack, price)
            time.sleep(1.0)
        result = followed.result(timeout=90)
    print(f"\n{body['type']}: moved → {result.statuses[-1]} in {time.monotonic() - moved_at:.2f}s")
    return order_id, result


def test_a_stop_waits_then_sells_once_the_market_falls_to_it(triggering_stack):
    stack = triggering_stack
    body = {**SELL, "type": "stop", "triggerPrice": "130"}
    before, _ = scrape(stack.base_url)
    order_id, result = follow(stack, body, 2, ["110"])
    after, _ = scrape(stack.base_url)
    assert result.statuses == TRIGGERED_PATH, stack.logs()
    assert result.events[0]["data"]["waitingFor"] == {"triggerPrice": "130"}
    triggered = result.events[1]["data"]
    assert triggered["triggered"] == {"triggerPrice": "130"}
    assert Decimal(triggered["decision"]["amountOut"]) <= Decimal("32.5")  # 0.25 × 130
    order = get_order(stack, order_id)
    assert (order["status"], order["waiting"], order["triggerPrice"]) == ("confirmed", False, "130")
    triggered = "order_engine_orders_triggered_total"
    assert (
        value(after, triggered, type="stop", leg="") - value(before, triggered, type="stop", leg="")
        == 1
    )
    finished = "order_engine_orders_finished_total"
    assert value(after, finished, type="stop", status="confirmed") >= 1


def test_a_bracket_takes_profit_as_a_limit_and_never_its_stop_loss(triggering_stack):
    stack = triggering_stack
    body = {
        **SELL,
        "type": "oco",
        "takeProfit": {"limitPrice": "200"},
        "stopLoss": {"triggerPrice": "100"},
    }
    before, _ = scrape(stack.base_url)
    order_id, result = follow(stack, body, 2, ["260", "80"])
    after, _ = scrape(stack.base_url)
    took = [
        value(after, "order_engine_orders_triggered_total", type="oco", leg=leg)
        - value(before, "order_engine_orders_triggered_total", type="oco", leg=leg)
        for leg in ("takeProfit", "stopLoss")
    ]
    assert took == [1, 0]
    assert result.statuses == TRIGGERED_PATH, stack.logs()
    triggered = result.events[1]["data"]
    assert triggered["leg"] == "takeProfit"
    assert triggered["triggered"] == {"takeProfit": {"limitPrice": "200"}}
    building = result.events[2]["data"]
    assert Decimal(building["minAmountOut"]) >= Decimal("50")  # 0.25 × 200: never below
    order = get_order(stack, order_id)
    assert (order["leg"], order["status"]) == ("takeProfit", "confirmed")
    # The stop-loss the market crossed afterwards never ran: one trigger, one swap.
    assert sum(1 for e in order["events"] if "triggered" in e["data"]) == 1


def test_a_bracket_stops_its_loss_as_a_stop(triggering_stack):
    stack = triggering_stack
    body = {
        **SELL,
        "type": "oco",
        "takeProfit": {"limitPrice": "200"},
        "stopLoss": {"triggerPrice": "120"},
    }
    order_id, result = follow(stack, body, 2, ["100"])
    assert result.statuses == TRIGGERED_PATH, stack.logs()
    assert result.events[1]["data"]["leg"] == "stopLoss"
    order = get_order(stack, order_id)
    assert (order["leg"], order["status"]) == ("stopLoss", "confirmed")
    # It sold as a stop does, at the market less its slippage: far under the take-profit.
    assert Decimal(order["amountOut"]) < Decimal("50")


def test_a_trailing_stop_follows_the_market_up_and_sells_on_the_way_down(triggering_stack):
    stack = triggering_stack
    body = {**SELL, "type": "trailing_stop", "trailBps": 1000}
    move(stack, "150")
    order_id = submit(stack, body)["orderId"]
    first = get_order(stack, order_id)
    assert first["trailBps"] == 1000
    with ThreadPoolExecutor(max_workers=1) as pool:
        followed = pool.submit(
            stream, f"{stack.ws_url}/api/orders/execute?orderId={order_id}", None, 90
        )
        move(stack, "180")  # the peak follows the market up ...

        def risen() -> bool:
            order = get_order(stack, order_id)
            return Decimal(order["peakPrice"]) > Decimal("170")

        wait_until(risen, 10, "the trailing stop's peak to follow the market up")
        order = get_order(stack, order_id)
        assert order["waiting"] is True
        assert Decimal(order["triggerLevel"]) > Decimal("153")  # 90 % of a peak over 170
        move(stack, "165")  # -8 %: within its trail
        time.sleep(1.5)
        assert get_order(stack, order_id)["waiting"] is True
        moved_at = time.monotonic()
        move(stack, "150")  # -17 % from the peak: past it
        result = followed.result(timeout=90)
    assert result.statuses == TRIGGERED_PATH, stack.logs()
    triggered = result.events[1]["data"]["triggered"]
    assert triggered["trailBps"] == 1000
    assert Decimal(triggered["peakPrice"]) > Decimal("170")
    assert Decimal(triggered["classPrice"]) <= Decimal(triggered["triggerLevel"])
    print(f"\ntrailing_stop: moved → confirmed in {time.monotonic() - moved_at:.2f}s")
