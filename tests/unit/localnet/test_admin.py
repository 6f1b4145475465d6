"""Admin methods: move a market, launch a token, drain a pool, status, bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from solders.keypair import Keypair

from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import METEORA_DLMM_PROGRAM, RAYDIUM_CPMM_PROGRAM
from tests.unit.localnet.conftest import SOL, USDC
from tests.unit.localnet.support import (
    RpcFailure,
    fetch,
    leg,
    pool_address,
    pool_mid,
    quote,
    send,
    status,
    swap_tx,
)


@pytest.mark.parametrize("pool_id", ["raydium:SOL-USDC", "meteora:SOL-USDC"])
def test_move_arbitrages_both_venues_to_the_new_price(node, pool_id):
    _, _, call = node
    result = call("localnet_move", {"pair": "SOL/USDC", "price": "250"})
    assert {p["poolId"] for p in result["pools"]} >= {"raydium:SOL-USDC", "meteora:SOL-USDC"}
    # Each venue keeps its skew (within ±2.5 %) around the new reference.
    mid = Decimal(pool_mid(call, pool_id))
    assert abs(mid / 250 - 1) < Decimal("0.035")
    # And the served accounts say so: quote one SOL from them.
    out = quote(call, pool_address(call, pool_id), SOL, 10**9)
    assert 235 * 10**6 < out < 265 * 10**6


def test_move_leaves_other_tokens_alone(node):
    _, _, call = node
    before = Decimal(pool_mid(call, "raydium:JUP-USDC"))
    call("localnet_move", {"pair": "SOL/USDC", "price": "250"})
    after = Decimal(pool_mid(call, "raydium:JUP-USDC"))
    assert abs(after / before - 1) < Decimal("0.01")


@pytest.mark.parametrize(
    ("venue", "program", "size"),
    [("raydium", RAYDIUM_CPMM_PROGRAM, 637), ("meteora", METEORA_DLMM_PROGRAM, 904)],
)
def test_launch_lists_a_new_pool_that_trades(node, payer, venue, program, size):
    _, clock, call = node
    mint = str(Keypair().pubkey())
    listed = call(
        "localnet_launch",
        {
            "mint": mint,
            "symbol": "NEW",
            "decimals": 6,
            "quote": "SOL",
            "liquidity": "1000",
            "price": "0.001",
            "venue": venue,
        },
    )
    assert listed["poolId"] == f"{venue}:NEW-SOL"
    found = call(
        "getProgramAccounts",
        str(program),
        {"encoding": "base64", "filters": [{"dataSize": size}]},
    )
    assert listed["address"] in {item["pubkey"] for item in found}
    assert abs(Decimal(listed["mid"]) / Decimal("0.001") - 1) < Decimal("0.01")
    assert call("getAccountInfo", mint)["value"]["space"] == 82  # its mint is served too
    # Buy NEW with 1 SOL at about 1000 NEW per SOL.
    out = quote(call, listed["address"], SOL, 10**9)
    assert 900 * 10**6 < out < 1_000 * 10**6
    signature, encoded = swap_tx(call, payer, [leg(call, listed["address"], SOL, 10**9, out)])
    send(call, encoded)
    clock.advance_ms(1_000)
    assert status(call, signature)["err"] is None


def test_launch_refuses_a_listed_token(node):
    _, _, call = node
    with pytest.raises(RpcFailure) as failure:
        call(
            "localnet_launch",
            {"mint": USDC, "symbol": "X", "liquidity": "1", "price": "1", "venue": "raydium"},
        )
    assert failure.value.code == -32602
    assert "already listed" in failure.value.message


@pytest.mark.parametrize(
    ("pool_id", "code"), [("raydium:SOL-USDC", 6012), ("meteora:SOL-USDC", 6012)]
)
def test_a_drained_pool_refuses_swaps(node, payer, pool_id, code):
    _, _, call = node
    pool = pool_address(call, pool_id)
    swap_leg = leg(call, pool, SOL, 10**9, 1)
    drained = call("localnet_drain", {"pool": pool})
    assert drained["poolId"] == pool_id
    assert drained["reserveX"] == drained["reserveY"] == "0"
    _, encoded = swap_tx(call, payer, [swap_leg])
    with pytest.raises(RpcFailure) as failure:
        send(call, encoded)
    assert failure.value.data["err"]["InstructionError"][1] == {"Custom": code}


def test_drain_by_id_empties_the_vaults(node):
    _, _, call = node
    call("localnet_drain", {"pool": "raydium:SOL-USDC"})
    state = CpmmPoolState.decode(fetch(call, [pool_address(call, "raydium:SOL-USDC")])[0][1])
    vaults = fetch(call, [str(state.token_0_vault), str(state.token_1_vault)])
    assert [TokenAccount.decode(v[1]).amount for v in vaults] == [0, 0]


def test_status_and_bad_admin_input(node):
    _, _, call = node
    result = call("localnet_status", {})
    assert result["slot"] == call("getSlot")
    assert result["pending"] == 0
    assert len(result["pools"]) == 18
    with pytest.raises(RpcFailure) as failure:
        call("localnet_planFaults", {"memo": "m", "faults": ["meteor_strike"]})
    assert failure.value.code == -32602
    with pytest.raises(RpcFailure):
        call("localnet_drain", {"pool": "raydium:NOPE-USDC"})
    with pytest.raises(RpcFailure):
        call("localnet_move", {"pair": "SOL-USDC", "price": "250"})
