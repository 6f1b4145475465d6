"""JSON-RPC shapes and error codes of the localnet (docs/localnet.md)."""

from __future__ import annotations

import json

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain.layouts.meteora import BinArray, LbPair, bitmap_indexes
from order_engine.chain.layouts.pdas import dlmm_bin_array_address
from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.pools import dlmm_pool
from order_engine.chain.programs import METEORA_DLMM_PROGRAM, RAYDIUM_CPMM_PROGRAM
from tests.unit.localnet.conftest import SOL, T0_MS
from tests.unit.localnet.support import RpcFailure, fetch, pool_address

GENESIS_MS = 1_767_225_600_000


def test_slot_and_blockhash_follow_the_clock(node):
    localnet, clock, call = node
    slot = (T0_MS - GENESIS_MS) // 400
    assert call("getSlot") == slot
    assert call("getBlockHeight") == slot
    answer = call("getLatestBlockhash", {"commitment": "confirmed"})
    assert answer["context"] == {"slot": slot, "apiVersion": "2.2.0"}
    assert answer["value"]["lastValidBlockHeight"] == slot + 150
    clock.advance_ms(400)
    later = call("getLatestBlockhash")
    assert later["value"]["blockhash"] != answer["value"]["blockhash"]
    assert call("isBlockhashValid", answer["value"]["blockhash"])["value"] is True


def test_blockhash_is_invalid_after_its_last_valid_block_height(make_node):
    _, clock, call = make_node(blockhash_validity_slots=5)
    blockhash = call("getLatestBlockhash")["value"]
    clock.advance_ms(4 * 400)
    assert call("getSlot") == blockhash["lastValidBlockHeight"]
    assert call("isBlockhashValid", blockhash["blockhash"])["value"] is True
    clock.advance_ms(400)
    assert call("isBlockhashValid", blockhash["blockhash"])["value"] is False


def test_envelope_errors(node):
    localnet, _, call = node
    assert localnet.handle({"jsonrpc": "2.0", "id": 7, "method": "nope"}) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": 7,
    }
    assert localnet.handle({"id": 1, "method": "getSlot"})["error"]["code"] == -32600
    reply = localnet.handle_body(b"{not json")
    assert json.loads(reply.body)["error"]["code"] == -32700
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
        {"jsonrpc": "2.0", "id": "b", "method": "getVersion"},
    ]
    answers = json.loads(localnet.handle_body(json.dumps(batch).encode()).body)
    assert [a["id"] for a in answers] == [1, "b"]
    assert answers[0]["result"] == "ok"
    assert answers[1]["result"]["solana-core"]


def test_min_context_slot_not_reached(node):
    _, _, call = node
    slot = call("getSlot")
    with pytest.raises(RpcFailure) as failure:
        call("getSlot", {"minContextSlot": slot + 10})
    assert failure.value.code == -32016
    assert failure.value.data == {"contextSlot": slot}


def test_get_account_info_default_encoding_refuses_large_accounts(node):
    _, _, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    with pytest.raises(RpcFailure) as failure:
        call("getAccountInfo", pool)
    assert failure.value.code == -32600
    assert "please use Base64 encoding" in failure.value.message
    value = call("getAccountInfo", pool, {"encoding": "base64"})["value"]
    assert value["owner"] == str(RAYDIUM_CPMM_PROGRAM)
    assert value["space"] == 637
    assert value["rentEpoch"] == 18_446_744_073_709_551_615
    assert value["data"][1] == "base64"
    # A small account comes back as base58 by default; an unknown one as null.
    mint = call("getAccountInfo", SOL)["value"]
    assert isinstance(mint["data"], str)
    assert mint["space"] == 82
    assert call("getAccountInfo", "11111111111111111111111111111112")["value"] is None
    with pytest.raises(RpcFailure) as bad:
        call("getAccountInfo", "not-a-key")
    assert bad.value.code == -32602


def test_get_multiple_accounts_serves_decodable_pools(node):
    _, _, call = node
    raydium = pool_address(call, "raydium:SOL-USDC")
    meteora = pool_address(call, "meteora:SOL-USDC")
    (_, pool_data), (_, pair_data) = fetch(call, [raydium, meteora])  # type: ignore[misc]
    state = CpmmPoolState.decode(pool_data)
    assert str(state.token_0_mint) == SOL
    pair = LbPair.decode(pair_data)
    indexes = bitmap_indexes(pair.bin_array_bitmap)
    assert indexes
    key = Pubkey.from_string(meteora)
    arrays = fetch(call, [str(dlmm_bin_array_address(key, i)) for i in indexes])
    decoded = [BinArray.decode(a[1]) for a in arrays]  # type: ignore[index]
    pool = dlmm_pool(pair, decoded)
    assert pool.active_id == pair.active_id
    assert len(pool.bins) > 100
    unknown = str(Keypair().pubkey())
    vaults = fetch(call, [str(state.token_0_vault), str(state.token_1_vault), unknown])
    assert TokenAccount.decode(vaults[0][1]).amount > 0  # type: ignore[index]
    assert vaults[2] is None
    with pytest.raises(RpcFailure) as failure:
        call("getMultipleAccounts", [raydium] * 101)
    assert failure.value.code == -32602
    assert failure.value.message == "Too many inputs provided; max 100"


def test_encoded_accounts_are_cached_until_the_pool_changes(node):
    localnet, _, call = node
    raydium = pool_address(call, "raydium:SOL-USDC")
    call("getMultipleAccounts", [raydium])
    account = localnet.cluster.accounts.get(raydium)
    assert "base64" in account.cache
    assert localnet.cluster.accounts.get(raydium) is account
    localnet.cluster.admin.drain("raydium:SOL-USDC")
    vault = str(CpmmPoolState.decode(account.data).token_0_vault)
    call("getMultipleAccounts", [vault])
    assert TokenAccount.decode(fetch(call, [vault])[0][1]).amount == 0  # type: ignore[index]


def test_get_program_accounts_filters(node):
    _, _, call = node
    lb_pairs = call(
        "getProgramAccounts",
        str(METEORA_DLMM_PROGRAM),
        {"encoding": "base64", "filters": [{"dataSize": 904}]},
    )
    assert len(lb_pairs) == 9
    assert set(lb_pairs[0]) == {"pubkey", "account"}
    sol_pools = call(
        "getProgramAccounts",
        str(RAYDIUM_CPMM_PROGRAM),
        {
            "encoding": "base64",
            "withContext": True,
            "filters": [{"dataSize": 637}, {"memcmp": {"offset": 168, "bytes": SOL}}],
        },
    )
    assert set(sol_pools) == {"context", "value"}
    assert len(sol_pools["value"]) == 2  # SOL/USDC and SOL/USDT have SOL as token_0
    with pytest.raises(RpcFailure) as failure:
        call("getProgramAccounts", str(RAYDIUM_CPMM_PROGRAM), {"filters": [{"dataSize": 1}] * 5})
    assert failure.value.message == "Too many filters provided; max 4"
