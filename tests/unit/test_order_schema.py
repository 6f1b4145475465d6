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


LIMIT = {**MARKET, "type": "limit", "limitPrice": "250"}


@pytest.mark.parametrize(
    "body",
    [
        {**LIMIT, "limitPrice": "0"},
        {**LIMIT, "limitPrice": "-5"},
        {**LIMIT, "limitPrice": "1e3"},
        {**LIMIT, "limitPrice": "abc"},
        {**LIMIT, "limitPrice": None},
        {**LIMIT, "limitPrice": True},
        {**MARKET, "limitPrice": "0"},
        {**MARKET, "type": "sniper", "tokenOut": NEW_MINT, "maxPrice": "0"},
        {**LIMIT, "expiresAt": "tomorrow"},
        {**LIMIT, "expiresIn": "soon"},
        {**LIMIT, "expiresIn": "0s"},
        {**LIMIT, "amount": "0", "tokenIn": "NOPE"},
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "0"},
        {"type": "stop", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "5"},
    ],
)
def test_each_refused_field_gets_one_clear_message(body):
    errors = refused(body)
    assert errors, body
    for field, messages in errors.items():
        assert len(messages) == 1, (field, messages)
        assert "None" not in messages[0], (field, messages)


def test_a_limit_price_of_0_is_refused_for_its_value_not_as_missing():
    assert refused({**LIMIT, "limitPrice": "0"}) == {"limitPrice": ["Must be greater than 0."]}
    missing = {k: v for k, v in LIMIT.items() if k != "limitPrice"}
    assert refused(missing) == {"limitPrice": ["Missing data for required field (limit orders)."]}


def test_expires_in_is_a_number_and_a_unit_from_now():
    before = datetime.now(UTC)
    for text, delta in (("90s", 90), ("30m", 1800), ("1h", 3600), ("1d", DAY_S)):
        order = SCHEMA.load({**LIMIT, "expiresIn": text})
        assert before + timedelta(seconds=delta) <= order["expiresAt"]
        assert order["expiresAt"] <= datetime.now(UTC) + timedelta(seconds=delta)
        assert order["expiresIn"] == timedelta(seconds=delta)


@pytest.mark.parametrize("text", ["1", "h", "1.5h", "-1h", "1 h", "1w", "PT1H", 3600, "0m"])
def test_expires_in_of_another_form_is_refused_saying_which_forms_are(text):
    [message] = refused({**LIMIT, "expiresIn": text})["expiresIn"]
    assert "90s" in message or "greater than 0" in message, message


def test_expires_in_is_bounded_by_the_horizon_and_only_for_waiting_orders():
    errors = refused({**LIMIT, "expiresIn": "2d"})
    assert errors == {"expiresIn": [f"Must be at most {DAY_S} s (LIMIT_MAX_HORIZON_S) ahead."]}
    errors = refused({**MARKET, "expiresIn": "1h"})
    assert errors == {"expiresIn": ["Not used by market orders."]}


def test_expires_at_and_expires_in_are_not_given_together():
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    errors = refused({**LIMIT, "expiresAt": soon, "expiresIn": "1h"})
    assert errors == {"expiresIn": ["Give expiresAt or expiresIn, not both."]}


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
