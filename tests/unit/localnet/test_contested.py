"""A contested chain in process, on virtual time: the fee market, durable nonces,
simulateTransaction, bundles and the searcher, and their state across a restart."""

from __future__ import annotations

import base64

import pytest
import solders.system_program as system
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain import tx as txb
from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.localnet.execution import FAUCET_LAMPORTS
from tests.unit.localnet.conftest import SOL
from tests.unit.localnet.support import (
    RpcFailure,
    fetch,
    leg,
    pool_address,
    quote,
    send,
    sign,
    status,
    swap_instructions,
)

NONCE_RENT = 1_447_680


def engine(node, method: str, params: list, route: str = "bundles"):
    answer = node.handle({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, route)
    if "error" in answer:
        raise RpcFailure(answer["error"])
    return answer["result"]


def swap(
    call, payer: Keypair, pool_id: str, amount: int, minimum: int = 1, price: int = 1_000, extra=()
):
    pool = pool_address(call, pool_id)
    ixs = swap_instructions(payer.pubkey(), [leg(call, pool, SOL, amount, minimum)], price=price)
    return sign(call, payer, [*ixs, *extra])


def test_under_high_a_low_fee_swap_waits_while_a_high_fee_one_lands_then_expires(make_node):
    _, clock, call = make_node(blockhash_validity_slots=20)
    call("localnet_congest", {"level": "high", "seconds": 60})
    low = send(call, swap(call, Keypair(), "raydium:SOL-USDC", 10**8, price=1)[1])
    high = send(call, swap(call, Keypair(), "raydium:SOL-USDC", 10**8, price=2_000_000)[1])
    clock.advance_ms(1_400)
    assert status(call, high) is not None
    assert status(call, low) is None
    assert call("localnet_status", {})["pending"] == 1
    clock.advance_ms(20 * 400)
    assert status(call, low) is None
    assert call("localnet_status", {})["pending"] == 0  # expired with its blockhash


def test_fees_per_account_a_hot_pool_dearer_than_the_chain(node):
    _, clock, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    call("localnet_congest", {"level": "high", "seconds": 30})
    clock.advance_ms(30 * 400)
    chain = [f["prioritizationFee"] for f in call("getRecentPrioritizationFees", [])[-25:]]
    hot = [f["prioritizationFee"] for f in call("getRecentPrioritizationFees", [pool])[-25:]]
    assert all(c > 0 for c in chain)
    assert all(h >= c for h, c in zip(hot, chain, strict=True))
    assert sum(hot) > 1.3 * sum(chain)
    with_many = call("getRecentPrioritizationFees", [pool] * 128)
    assert len(with_many) == 150
    with pytest.raises(RpcFailure) as refused:
        call("getRecentPrioritizationFees", [pool] * 129)
    assert refused.value.code == -32602


def _nonce(call, clock, payer: Keypair) -> tuple[Keypair, str]:
    nonce = Keypair()
    ixs = system.create_nonce_account(payer.pubkey(), nonce.pubkey(), payer.pubkey(), NONCE_RENT)
    send(call, sign(call, payer, ixs, nonce)[1])
    clock.advance_ms(1_400)
    return nonce, _nonce_value(call, nonce)


def _nonce_value(call, nonce: Keypair) -> str:
    account = call("getAccountInfo", str(nonce.pubkey()), {"encoding": "base64"})["value"]
    data = base64.b64decode(account["data"][0])
    assert account["owner"] == "11111111111111111111111111111111"
    assert len(data) == 80
    assert data[:8] == bytes([1, 0, 0, 0, 1, 0, 0, 0])  # version 1 (current), initialized
    return str(Hash(data[40:72]))


def _advance(nonce: Keypair, authority: Keypair):
    return system.advance_nonce_account(
        {"nonce_pubkey": nonce.pubkey(), "authorized_pubkey": authority.pubkey()}
    )


def test_two_versions_on_one_nonce_one_lands_the_other_never(node, payer):
    _, clock, call = node
    nonce, value = _nonce(call, clock, payer)
    advance = _advance(nonce, payer)
    pool = pool_address(call, "raydium:SOL-USDC")
    versions = []
    for price in (1_000, 1_500):
        ixs = [
            advance,
            *swap_instructions(payer.pubkey(), [leg(call, pool, SOL, 10**8, 1)], price=price),
        ]
        versions.append(sign(call, payer, ixs, blockhash=value))
    for _, encoded in versions:
        send(call, encoded)
    clock.advance_ms(200 * 400)  # past any blockhash's life: a nonce has no expiry
    landed = [status(call, signature) for signature, _ in versions]
    assert sum(found is not None for found in landed) == 1
    assert _nonce_value(call, nonce) != value
    with pytest.raises(RpcFailure) as refused:
        send(call, versions[1][1] if landed[0] else versions[0][1])
    assert refused.value.data["err"] == "BlockhashNotFound"


def test_a_nonce_advances_even_when_its_swap_fails(node, payer):
    _, clock, call = node
    nonce, value = _nonce(call, clock, payer)
    advance = _advance(nonce, payer)
    pool = pool_address(call, "raydium:SOL-USDC")
    minimum = quote(call, pool, SOL, 10**8) * 2
    ixs = [advance, *swap_instructions(payer.pubkey(), [leg(call, pool, SOL, 10**8, minimum)])]
    signature, encoded = sign(call, payer, ixs, blockhash=value)
    send(call, encoded, skipPreflight=True)
    clock.advance_ms(1_400)
    assert status(call, signature)["err"]["InstructionError"][1] == {"Custom": 6005}
    assert _nonce_value(call, nonce) != value


def test_simulation_runs_without_changing_anything(node, payer):
    _, _, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    signature, encoded = swap(call, payer, "raydium:SOL-USDC", 10**9)
    before = call("getBalance", str(payer.pubkey()))["value"]
    answer = call("simulateTransaction", encoded, {"encoding": "base64"})
    value = answer["value"]
    assert value["err"] is None
    assert value["unitsConsumed"] > 50_000
    assert value["replacementBlockhash"] is None
    assert value["fee"] == 5_400
    assert any("consumed" in line for line in value["logs"])
    assert call("getBalance", str(payer.pubkey()))["value"] == before
    assert status(call, signature) is None
    failing = swap(call, payer, "raydium:SOL-USDC", 10**9, quote(call, pool, SOL, 10**9) * 2)[1]
    value = call("simulateTransaction", failing, {"encoding": "base64"})["value"]
    assert value["err"]["InstructionError"][1] == {"Custom": 6005}
    stale = swap(call, payer, "raydium:SOL-USDC", 10**9, extra=())[1]
    old = sign(call, payer, [txb.memo_instruction("old")], blockhash=str(Hash.default()))[1]
    assert (
        call("simulateTransaction", old, {"encoding": "base64"})["value"]["err"]
        == "BlockhashNotFound"
    )
    replaced = call(
        "simulateTransaction", old, {"encoding": "base64", "replaceRecentBlockhash": True}
    )["value"]
    assert replaced["err"] is None
    assert (
        replaced["replacementBlockhash"]["blockhash"]
        == call("getLatestBlockhash")["value"]["blockhash"]
    )
    both = {"encoding": "base64", "sigVerify": True, "replaceRecentBlockhash": True}
    with pytest.raises(RpcFailure) as refused:
        call("simulateTransaction", stale, both)
    assert refused.value.code == -32602


def _sol_reserve(call, pool: str) -> int:
    state = CpmmPoolState.decode(fetch(call, [pool])[0][1])
    vault = state.token_0_vault if str(state.token_0_mint) == SOL else state.token_1_vault
    return TokenAccount.decode(fetch(call, [str(vault)])[0][1]).amount


def test_a_bundle_is_atomic_needs_a_tip_and_reports_its_statuses(node):
    localnet, clock, call = node
    tips = engine(localnet, "getTipAccounts", [])
    assert len(set(tips)) == 8
    payer = Keypair()
    tip = txb.system_transfer(payer.pubkey(), Pubkey.from_string(tips[3]), 5_000)
    pool = pool_address(call, "raydium:SOL-USDC")
    good = swap(call, payer, "raydium:SOL-USDC", 10**8, extra=[tip])
    bad = swap(call, payer, "raydium:SOL-USDC", 10**8, quote(call, pool, SOL, 10**8) * 2)
    failed = engine(localnet, "sendBundle", [[good[1], bad[1]], {"encoding": "base64"}])
    clock.advance_ms(1_400)
    assert (
        engine(localnet, "getInflightBundleStatuses", [[failed]])["value"][0]["status"] == "Failed"
    )
    assert status(call, good[0]) is None
    assert status(call, bad[0]) is None
    assert call("getBalance", str(payer.pubkey()))["value"] == FAUCET_LAMPORTS  # nothing charged
    landed = engine(localnet, "sendBundle", [[good[1]], {"encoding": "base64"}])
    clock.advance_ms(1_400)
    (inflight,) = engine(localnet, "getInflightBundleStatuses", [[landed]])["value"]
    assert inflight["status"] == "Landed"
    (found,) = engine(localnet, "getBundleStatuses", [[landed]])["value"]
    assert found["transactions"] == [good[0]]
    assert found["slot"] == inflight["landed_slot"]
    assert found["err"] == {"Ok": None}
    with pytest.raises(RpcFailure) as refused:
        engine(localnet, "sendBundle", [[bad[1]], {"encoding": "base64"}])
    assert refused.value.code == -32602
    assert "tip" in refused.value.message


def test_the_searcher_sandwiches_a_loose_public_swap_but_never_a_tight_one_or_a_bundle(node):
    localnet, clock, call = node
    call("localnet_mev", {"rate": "1"})
    pool = pool_address(call, "raydium:SOL-USDC")
    amount = 2_000 * 10**9
    loose = quote(call, pool, SOL, amount) * 97 // 100
    victim, encoded = swap(call, Keypair(), "raydium:SOL-USDC", amount, loose)
    send(call, encoded)
    clock.advance_ms(999)
    sol_before = _sol_reserve(call, pool)  # the slot's arbitrage done, the swap not landed
    clock.advance_ms(1)  # it lands, sandwiched; the next slot's arbitrage is still to come
    sol_after = _sol_reserve(call, pool)
    (entry,) = call("localnet_mevReport", {})
    (landed,) = call("localnet_ledger", {"signature": victim})
    assert entry["victim"] == victim
    assert entry["slot"] == status(call, victim)["slot"]
    assert loose <= landed["amountOut"] <= loose + loose // 10**6
    assert entry["valueTakenAtoms"] == entry["outputAloneAtoms"] - landed["amountOut"] > 0
    # The pool kept the victim's SOL less the searcher's profit: front-run in, back-run out.
    assert entry["profitAtoms"] > 0
    assert sol_after - sol_before == amount - entry["profitAtoms"]
    clock.advance_ms(400)  # the next slot's arbitrage takes the pool back to the market
    tight = quote(call, pool, SOL, amount)  # no allowance: no front-run leaves it its minimum
    send(call, swap(call, Keypair(), "raydium:SOL-USDC", amount, tight)[1])
    clock.advance_ms(1_400)
    tips = engine(localnet, "getTipAccounts", [])
    payer = Keypair()
    tip = txb.system_transfer(payer.pubkey(), Pubkey.from_string(tips[0]), 5_000)
    bundled = swap(
        call,
        payer,
        "raydium:SOL-USDC",
        amount,
        quote(call, pool, SOL, amount) * 97 // 100,
        extra=[tip],
    )
    engine(localnet, "sendBundle", [[bundled[1]], {"encoding": "base64"}])
    clock.advance_ms(1_400)
    assert status(call, bundled[0])["err"] is None
    assert len(call("localnet_mevReport", {})) == 1


def test_the_level_the_searcher_fees_nonces_and_bundles_survive_a_restart(
    make_node, tmp_path, payer
):
    localnet, clock, call = make_node(state_dir=tmp_path)
    call("localnet_congest", {"level": "busy", "seconds": 600})
    call("localnet_mev", {"rate": "0.25"})
    nonce, value = _nonce(call, clock, payer)
    tips = engine(localnet, "getTipAccounts", [])
    tip = txb.system_transfer(payer.pubkey(), Pubkey.from_string(tips[0]), 5_000)
    bundled = swap(call, payer, "raydium:SOL-USDC", 10**8, extra=[tip])[1]
    bundle = engine(localnet, "sendBundle", [[bundled], {"encoding": "base64"}])
    clock.advance_ms(20 * 400)
    fees = call("getRecentPrioritizationFees", [])
    statuses = engine(localnet, "getBundleStatuses", [[bundle]])
    status_before = call("localnet_status", {})
    localnet.close()
    restarted, _, again = make_node(state_dir=tmp_path, clock=clock)
    after = again("localnet_status", {})
    assert after["congestion"] == status_before["congestion"]
    assert after["congestion"]["level"] == "busy"
    assert after["mevRate"] == "0.25"
    assert again("getRecentPrioritizationFees", []) == fees
    assert engine(restarted, "getBundleStatuses", [[bundle]]) == statuses
    assert statuses["value"][0] is not None
    assert _nonce_value(again, nonce) == value
