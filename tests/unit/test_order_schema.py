"""The order body's shape, checked without an app, a chain or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from marshmallow import ValidationError

from order_engine.schemas.order import OrderCreateSchema, UnlistedMint

DAY_S = 24 * 3600
SCHEMA = OrderCreateSchema(limit_max_horizon_s=DAY_S)
MARKET = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
NEW_MINT = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"  # well formed, not in the registry


def refused(body: dict[str, Any], schema: OrderCreateSchema = SCHEMA) -> dict[str, Any]:
    with pytest.raises(ValidationError) as refusal:
        schema.load(body)
    assert isinstance(refusal.value.messages, dict)
    return refusal.value.messages


def test_a_market_order_loads_as_tokens_and_an_exact_amount_with_no_app_around():
    order = SCHEMA.load(MARKET)
    assert (order["tokenIn"].symbol, order["tokenOut"].symbol) == ("SOL", "USDC")
    assert order["amount"] == Decimal("1.5")
    assert order["slippageBps"] == 50


def test_a_pair_no_venue_lists_is_well_formed_the_chain_is_asked_elsewhere():
    order = SCHEMA.load({**MARKET, "tokenIn": "JUP", "tokenOut": "RAY"})
    assert (order["tokenIn"].symbol, order["tokenOut"].symbol) == ("JUP", "RAY")


def test_a_sniper_names_an_unlisted_mint_and_never_a_listed_token():
    order = SCHEMA.load({**MARKET, "type": "sniper", "tokenOut": NEW_MINT})
    assert isinstance(order["tokenOut"], UnlistedMint)
    errors = refused({**MARKET, "type": "sniper"})
    assert errors == {"tokenOut": ["USDC is already listed; use a market order."]}


def test_an_unlisted_mint_is_refused_where_a_sniper_does_not_wait_for_it():
    errors = refused({**MARKET, "tokenOut": NEW_MINT})
    assert list(errors) == ["tokenOut"]
    errors = refused({**MARKET, "type": "sniper", "tokenIn": NEW_MINT, "tokenOut": NEW_MINT})
    assert list(errors) == ["tokenIn"]


def test_sol_and_wsol_are_one_token():
    errors = refused({**MARKET, "tokenIn": "wSOL", "tokenOut": "SOL"})
    assert errors["tokenOut"] == ["Must differ from tokenIn (SOL and wSOL are one token)."]


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [("0.0000000001", "SOL has 9 decimals"), ("99999999999999999999", "largest SOL amount")],
)
def test_an_amount_the_token_cannot_hold_is_refused_by_its_decimals(amount, fragment):
    assert fragment in refused({**MARKET, "amount": amount})["amount"][0]


def test_expiry_is_bounded_by_the_horizon_the_schema_is_given():
    soon = datetime.now(UTC) + timedelta(hours=1)
    body = {**MARKET, "type": "limit", "limitPrice": "250", "expiresAt": soon.isoformat()}
    assert SCHEMA.load(body)["expiresAt"] == soon
    errors = refused(body, OrderCreateSchema(limit_max_horizon_s=60))
    assert errors == {"expiresAt": ["Must be at most 60 s (LIMIT_MAX_HORIZON_S) ahead."]}


def test_every_shape_problem_of_a_body_is_named_at_once():
    errors = refused({**MARKET, "tokenOut": "SOL", "slippageBps": 5001, "limitPrice": "1"})
    assert set(errors) == {"tokenOut", "slippageBps", "limitPrice"}


def test_a_stop_bracket_or_trailing_stop_that_names_no_slippage_gets_the_stop_default():
    schema = OrderCreateSchema(limit_max_horizon_s=DAY_S, stop_slippage_bps=250)
    stop = {**MARKET, "type": "stop", "triggerPrice": "120"}
    assert schema.load(stop)["slippageBps"] == 250
    assert schema.load({**stop, "slippageBps": 10})["slippageBps"] == 10
    trailing = {**MARKET, "type": "trailing_stop", "trailBps": 500}
    assert schema.load(trailing)["slippageBps"] == 250
    assert schema.load(MARKET)["slippageBps"] == 50


def test_a_bracket_whose_take_profit_is_not_above_its_stop_loss_is_refused():
    bracket = {**MARKET, "type": "oco", "takeProfit": {"limitPrice": "120"}}
    errors = refused({**bracket, "stopLoss": {"triggerPrice": "120"}})
    assert list(errors) == ["takeProfit"]
    assert "must be above stopLoss.triggerPrice" in errors["takeProfit"][0]
    loaded = SCHEMA.load({**bracket, "stopLoss": {"triggerPrice": "119.99"}})
    assert loaded["takeProfit"] == {"limitPrice": Decimal("120")}
    assert loaded["stopLoss"] == {"triggerPrice": Decimal("119.99")}
