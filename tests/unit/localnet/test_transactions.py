"""Sending, landing, statuses, atomicity, expiry, durability and injected faults, in process."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import associated_token_address
from order_engine.config import LatencyRange
from order_engine.localnet.execution import FAUCET_LAMPORTS, FAUCET_TOKEN_ATOMS
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


def _usdc_balance(call, payer: Keypair) -> int | None:
    ata = associated_token_address(payer.pubkey(), Pubkey.from_string(USDC))
    found = fetch(call, [str(ata)])[0]
    return None if found is None else TokenAccount.decode(found[1]).amount


def test_a_swap_lands_after_the_latency_and_its_status_advances(node, payer):
    localnet, clock, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    expected = quote(call, pool, SOL, 10**9)
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**9, expected)], memo="o1")
    assert send(call, encoded) == signature
    assert status(call, signature) is None
    clock.advance_ms(1_000)
    landed = status(call, signature)
    assert landed == {
        "slot": call("getSlot"),
        "confirmations": 0,
        "err": None,
        "status": {"Ok": None},
        "confirmationStatus": "processed",
    }
    clock.advance_ms(400)
    assert status(call, signature)["confirmationStatus"] == "confirmed"
    clock.advance_ms(32 * 400)
    final = status(call, signature)
    assert final["confirmationStatus"] == "finalized"
    assert final["confirmations"] is None
    (entry,) = call("localnet_ledger", {"memo": "o1"})
    assert entry["status"] == "landed"
    assert entry["amountIn"] == 10**9
    # The market may move between quote and landing, by a few bps at most.
    assert abs(entry["amountOut"] - expected) * 1_000 < expected
    assert _usdc_balance(call, payer) == FAUCET_TOKEN_ATOMS + entry["amountOut"]


@pytest.mark.parametrize(
    ("pool_id", "code"), [("raydium:SOL-USDC", 6005), ("meteora:SOL-USDC", 6003)]
)
def test_preflight_refuses_a_swap_below_its_minimum(node, payer, pool_id, code):
    _, _, call = node
    pool = pool_address(call, pool_id)
    minimum = quote(call, pool, SOL, 10**9) + 1
    _, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**9, minimum)])
    with pytest.raises(RpcFailure) as failure:
        send(call, encoded)
    assert failure.value.code == -32002
    assert failure.value.message.startswith("Transaction simulation failed: Error processing")
    index = failure.value.data["err"]["InstructionError"][0]
    assert failure.value.data["err"] == {"InstructionError": [index, {"Custom": code}]}
    assert failure.value.data["accounts"] is None
    assert any(f"Error Number: {code}" in line for line in failure.value.data["logs"])


def test_a_failed_swap_lands_with_its_error_and_pays_only_the_fee(node, payer):
    _, clock, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    minimum = quote(call, pool, SOL, 10**9) * 2
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**9, minimum)], memo="f")
    send(call, encoded, skipPreflight=True)
    clock.advance_ms(1_000)
    landed = status(call, signature)
    assert landed["err"]["InstructionError"][1] == {"Custom": 6005}
    assert landed["status"] == {"Err": landed["err"]}
    (entry,) = call("localnet_ledger", {"signature": signature})
    assert entry["status"] == "failed"
    assert entry["amountOut"] == 0
    lamports = call("getBalance", str(payer.pubkey()))["value"]
    assert FAUCET_LAMPORTS - lamports == entry["fee"]
    assert (
        _usdc_balance(call, payer) == FAUCET_TOKEN_ATOMS
    )  # the faucet's, untouched by the failed swap


def test_two_legs_are_atomic(make_node, payer):
    # Twin clusters on the same seed and clock: one gets the failing swap, one nothing.
    localnet, clock, call = make_node()
    _, twin_clock, twin = make_node()
    raydium = pool_address(call, "raydium:SOL-USDC")
    meteora = pool_address(call, "meteora:SOL-USDC")
    good = leg(call, raydium, SOL, 10**9, 1)
    bad = leg(call, meteora, SOL, 10**9, quote(call, meteora, SOL, 10**9) * 2)
    signature, encoded = swap_tx(call, payer, [good, bad])
    send(call, encoded, skipPreflight=True)
    clock.advance_ms(1_000)
    twin_clock.advance_ms(1_000)
    assert status(call, signature)["err"]["InstructionError"][1] == {"Custom": 6003}
    state = CpmmPoolState.decode(fetch(call, [raydium])[0][1])
    vaults = [str(state.token_0_vault), str(state.token_1_vault)]
    assert fetch(call, vaults) == fetch(twin, vaults)
    assert fetch(call, [meteora]) == fetch(twin, [meteora])
    assert _usdc_balance(call, payer) == FAUCET_TOKEN_ATOMS  # neither leg paid out


def test_resending_is_idempotent_and_a_landed_signature_is_already_processed(node, payer):
    _, clock, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)])
    assert send(call, encoded) == signature
    assert send(call, encoded) == signature
    clock.advance_ms(1_000)
    with pytest.raises(RpcFailure) as failure:
        send(call, encoded)
    assert failure.value.code == -32002
    assert failure.value.data["err"] == "AlreadyProcessed"
    assert send(call, encoded, skipPreflight=True) == signature
    assert len(call("localnet_ledger", {"signature": signature})) == 1


def test_an_old_blockhash_is_refused_and_a_late_landing_never_happens(make_node, payer):
    _, clock, call = make_node(blockhash_validity_slots=5, swap_latency=LatencyRange(3000, 3000))
    pool = pool_address(call, "raydium:SOL-USDC")
    old = call("getLatestBlockhash")["value"]["blockhash"]
    clock.advance_ms(5 * 400)
    _, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)], blockhash=old)
    with pytest.raises(RpcFailure) as failure:
        send(call, encoded)
    assert failure.value.code == -32002
    assert failure.value.data["err"] == "BlockhashNotFound"
    # Accepted, but it would land after its blockhash expires (3 s > 5 slots): it never lands.
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)])
    send(call, encoded)
    clock.advance_ms(10_000)
    assert status(call, signature) is None
    assert call("localnet_ledger", {"signature": signature}) == []


def test_a_tampered_signature_is_refused(node, payer):
    _, _, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    _, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)])
    raw = bytearray(base64.b64decode(encoded))
    raw[5] ^= 0xFF
    with pytest.raises(RpcFailure) as failure:
        send(call, base64.b64encode(bytes(raw)).decode())
    assert failure.value.code == -32003


def test_a_restart_on_the_same_state_dir_keeps_the_ledger_and_pools(make_node, payer, tmp_path):
    localnet, clock, call = make_node(state_dir=tmp_path)
    pool = pool_address(call, "meteora:SOL-USDC")
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**9, 1)], memo="d")
    send(call, encoded)
    clock.advance_ms(1_000)
    landed = status(call, signature)
    assert landed["err"] is None
    before = fetch(call, [pool])
    localnet.close()
    _, _, again = make_node(state_dir=tmp_path, clock=clock)
    assert status(again, signature) == landed
    assert fetch(again, [pool]) == before
    assert again("localnet_ledger", {"memo": "d"})[0]["signature"] == signature


# -- injected faults ---------------------------------------------------------------------------


def _planned(call, payer, memo, *faults):
    call("localnet_planFaults", {"memo": memo, "faults": list(faults)})
    pool = pool_address(call, "raydium:SOL-USDC")
    return swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)], memo=memo)


def test_rpc_unavailable_refuses_one_send(node, payer):
    _, clock, call = node
    signature, encoded = _planned(call, payer, "u", "rpc_unavailable")
    with pytest.raises(RpcFailure) as failure:
        send(call, encoded)
    assert failure.value.code == -32005
    assert send(call, encoded) == signature  # the next send goes through
    clock.advance_ms(1_000)
    assert status(call, signature)["err"] is None


def test_lost_response_accepts_the_transaction_but_answers_503(node, payer):
    localnet, clock, call = node
    signature, encoded = _planned(call, payer, "l", "lost_response")
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "sendTransaction",
        "params": [encoded, {"encoding": "base64"}],
    }
    reply = localnet.handle_body(json.dumps(body).encode())
    assert reply.status == 503
    assert json.loads(reply.body)["error"]["code"] == -32005
    clock.advance_ms(1_000)
    assert status(call, signature)["err"] is None


def test_drop_accepts_but_never_lands(node, payer):
    _, clock, call = node
    signature, encoded = _planned(call, payer, "d", "drop")
    assert send(call, encoded) == signature
    assert send(call, encoded) == signature  # a re-broadcast is acknowledged, changes nothing
    clock.advance_ms(70_000)
    assert status(call, signature) is None


def test_price_jump_moves_the_pool_against_the_swap_before_it_lands(node, payer):
    _, clock, call = node
    call("localnet_planFaults", {"memo": "j", "faults": ["price_jump"]})
    pool = pool_address(call, "raydium:SOL-USDC")
    minimum = quote(call, pool, SOL, 10**9) * 98 // 100
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**9, minimum)], memo="j")
    send(call, encoded)
    clock.advance_ms(1_000)
    assert status(call, signature)["err"]["InstructionError"][1] == {"Custom": 6005}


def test_stall_holds_the_answer_and_accepts_nothing(node, payer):
    localnet, clock, call = node
    signature, encoded = _planned(call, payer, "s", "stall")
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "sendTransaction",
        "params": [encoded, {"encoding": "base64"}],
    }
    reply = localnet.handle_body(json.dumps(body).encode())
    assert reply.stall_s == 30
    clock.advance_ms(2_000)
    assert status(call, signature) is None


def test_transient_failures_are_rolled_per_send(make_node, payer):
    _, clock, call = make_node(transient_failure_rate=Decimal("0.5"))
    pool = pool_address(call, "raydium:SOL-USDC")
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)])
    outcomes = []
    for _ in range(12):
        try:
            outcomes.append(send(call, encoded))
        except RpcFailure as failure:
            outcomes.append(failure.code)
    assert signature in outcomes
    assert -32005 in outcomes
    assert set(outcomes) == {signature, -32005}


def test_congestion_keeps_accepted_transactions_out(node, payer):
    _, clock, call = node
    call("localnet_congest", {"expiryRate": "1", "seconds": 30})
    pool = pool_address(call, "raydium:SOL-USDC")
    signature, encoded = swap_tx(call, payer, [leg(call, pool, SOL, 10**8, 1)])
    send(call, encoded)
    clock.advance_ms(5_000)
    assert status(call, signature) is None
    mid = pool_mid(call, "raydium:SOL-USDC")
    assert mid is not None
