"""The real localnet process over HTTP: durable nonces, the searcher, the block engine's bundle
endpoints with the tip floor, and all of their state across a restart of the process. Needs no
database or broker."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import solders.system_program as system
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain import tx as txb
from order_engine.domain.tokens import resolve
from order_engine.localnet.execution import FAUCET_LAMPORTS
from order_engine.ops.launch import free_port
from tests.support.localnet_process import Process
from tests.support.watchers import wait_until
from tests.unit.localnet.support import (
    Call,
    RpcFailure,
    leg,
    over_http,
    pool_address,
    quote,
    send,
    sign,
    status,
    swap_instructions,
)

pytestmark = pytest.mark.integration

SOL = resolve("SOL").mint
FAST = {"LOCALNET_SLOT_MS": "100", "DEX_SWAP_LATENCY_MS": "20-50"}
NONCE_RENT = 1_447_680
BIG = 2_000 * 10**9  # lamports: a swap large enough that sandwiching it pays on SOL/USDC


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = Process(tmp_path_factory.mktemp("localnet-engine"), free_port(), FAST)
    yield process
    process.stop()


def bundles(process: Process) -> Call:
    return over_http(process.url + "/api/v1/bundles")


def swap(
    call: Call, payer: Keypair, amount: int, minimum: int = 1, extra=(), **budget
) -> tuple[str, str]:
    pool = pool_address(call, "raydium:SOL-USDC")
    ixs = swap_instructions(payer.pubkey(), [leg(call, pool, SOL, amount, minimum)], **budget)
    return sign(call, payer, [*ixs, *extra])


def tipped(process: Process, payer: Keypair, lamports: int = 5_000) -> txb.Instruction:
    tips = bundles(process)("getTipAccounts")
    return txb.system_transfer(payer.pubkey(), Pubkey.from_string(tips[0]), lamports)


def landed(call: Call, signature: str) -> dict:
    return wait_until(lambda: status(call, signature), 10, f"{signature} to land")


def nonce_account(call: Call, payer: Keypair) -> tuple[Keypair, str]:
    nonce = Keypair()
    ixs = system.create_nonce_account(payer.pubkey(), nonce.pubkey(), payer.pubkey(), NONCE_RENT)
    signature, encoded = sign(call, payer, ixs, nonce)
    send(call, encoded)
    slot = landed(call, signature)["slot"]
    wait_until(lambda: call("getSlot") > slot, 5, "the next slot")  # a nonce moves once a slot
    return nonce, nonce_value(call, nonce)


def nonce_value(call: Call, nonce: Keypair) -> str:
    account = call("getAccountInfo", str(nonce.pubkey()), {"encoding": "base64"})["value"]
    data = base64.b64decode(account["data"][0])
    assert account["owner"] == "11111111111111111111111111111111"
    assert account["lamports"] == NONCE_RENT
    assert len(data) == 80
    assert data[:8] == bytes([1, 0, 0, 0, 1, 0, 0, 0])  # version 1 (current), initialized
    return str(Hash(data[40:72]))


def advance(nonce: Keypair, authority: Keypair) -> txb.Instruction:
    return system.advance_nonce_account(
        {"nonce_pubkey": nonce.pubkey(), "authorized_pubkey": authority.pubkey()}
    )


def test_two_versions_on_one_nonce_one_lands_and_the_other_never(localnet):
    call = localnet.call
    payer = Keypair()
    nonce, value = nonce_account(call, payer)
    versions = [
        sign(call, payer, [advance(nonce, payer), *_swap_ixs(call, payer, price)], blockhash=value)
        for price in (1_000, 2_000)
    ]
    answers = _batch(localnet, [_send_request(encoded) for _, encoded in versions])
    assert [a["result"] for a in answers] == [s for s, _ in versions]  # both accepted
    first = wait_until(
        lambda: [s for s, _ in versions if status(call, s)], 10, "one version to land"
    )
    assert len(first) == 1
    moved = nonce_value(call, nonce)
    assert moved != value
    slot = call("getSlot")
    wait_until(lambda: call("getSlot") > slot + 20, 10, "twenty slots")
    assert [s for s, _ in versions if status(call, s)] == first
    other = next(encoded for s, encoded in versions if s not in first)
    with pytest.raises(RpcFailure) as refused:
        send(call, other)
    assert refused.value.data["err"] == "BlockhashNotFound"


def _send_request(encoded: str) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": encoded[:8],
        "method": "sendTransaction",
        "params": [encoded, {"encoding": "base64"}],
    }


def _batch(process: Process, requests: list[dict]) -> list[dict]:
    """One HTTP request carrying several: the node takes them in order, at one instant."""
    request = urllib.request.Request(
        process.url,
        data=json.dumps(requests).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _swap_ixs(call: Call, payer: Keypair, price: int, minimum: int = 1) -> list:
    pool = pool_address(call, "raydium:SOL-USDC")
    return swap_instructions(payer.pubkey(), [leg(call, pool, SOL, 10**8, minimum)], price=price)


def test_a_nonce_advances_even_when_the_swap_fails(localnet):
    call = localnet.call
    payer = Keypair()
    nonce, value = nonce_account(call, payer)
    minimum = quote(call, pool_address(call, "raydium:SOL-USDC"), SOL, 10**8) * 2
    ixs = [advance(nonce, payer), *_swap_ixs(call, payer, 1_000, minimum)]
    signature, encoded = sign(call, payer, ixs, blockhash=value)
    send(call, encoded, skipPreflight=True)
    assert landed(call, signature)["err"] == {"InstructionError": [7, {"Custom": 6005}]}
    assert nonce_value(call, nonce) != value


def test_the_searcher_sandwiches_a_loose_swap_not_a_tight_one_nor_a_bundle(localnet):
    call = localnet.call
    pool = pool_address(call, "raydium:SOL-USDC")
    result = localnet.cli("mev", "--rate", "1")
    assert result.returncode == 0, result.stderr
    try:
        loose = quote(call, pool, SOL, BIG) * 97 // 100
        victim, encoded = swap(call, Keypair(), BIG, loose)
        send(call, encoded)
        slot = landed(call, victim)["slot"]
        (entry,) = [e for e in call("localnet_mevReport", {}) if e["victim"] == victim]
        (ledger,) = call("localnet_ledger", {"signature": victim})
        assert entry["slot"] == slot
        assert entry["pool"] == pool
        assert entry["outputMint"] == resolve("USDC").mint
        assert loose <= ledger["amountOut"] <= loose + loose // 10**6  # filled at its minimum
        assert entry["valueTakenAtoms"] == entry["outputAloneAtoms"] - ledger["amountOut"]
        assert entry["valueTakenAtoms"] > 0
        report = localnet.cli("mev-report")
        assert victim in report.stdout
        tight = quote(call, pool, SOL, BIG)  # no allowance: nothing to take
        alone, encoded = swap(call, Keypair(), BIG, tight)
        send(call, encoded, skipPreflight=True)
        landed(call, alone)
        payer = Keypair()
        loose = quote(call, pool, SOL, BIG) * 97 // 100
        bundled, encoded = swap(call, payer, BIG, loose, extra=[tipped(localnet, payer)])
        bundles(localnet)("sendBundle", [encoded], {"encoding": "base64"})
        assert landed(call, bundled)["err"] is None
        victims = {e["victim"] for e in call("localnet_mevReport", {})}
        assert alone not in victims
        assert bundled not in victims
    finally:
        call("localnet_mev", {"rate": "0"})


def test_bundles_all_or_nothing_a_tip_required_their_statuses_and_the_tip_floor(localnet):
    call, engine = localnet.call, bundles(localnet)
    tips = engine("getTipAccounts")
    assert len(set(tips)) == 8
    assert all(len(bytes(Pubkey.from_string(t))) == 32 for t in tips)
    payer = Keypair()
    pool = pool_address(call, "raydium:SOL-USDC")
    good_sig, good = swap(call, payer, 10**8, extra=[tipped(localnet, payer)])
    bad_sig, bad = swap(call, payer, 10**8, quote(call, pool, SOL, 10**8) * 2, memo="bad")
    failed = engine("sendBundle", [good, bad], {"encoding": "base64"})
    wait_until(lambda: _inflight(engine, failed)["status"] == "Failed", 10, "the bundle to fail")
    assert status(call, good_sig) is None
    assert status(call, bad_sig) is None
    assert call("getBalance", str(payer.pubkey()))["value"] == FAUCET_LAMPORTS  # none charged
    assert engine("getBundleStatuses", [failed])["value"] == [None]
    with pytest.raises(RpcFailure) as refused:
        engine("sendBundle", [bad], {"encoding": "base64"})
    assert refused.value.code == -32602
    assert "tip" in refused.value.message
    with pytest.raises(RpcFailure) as refused:
        engine("sendBundle", [good] * 6, {"encoding": "base64"})
    assert refused.value.code == -32602
    bundle = engine("sendBundle", [good], {"encoding": "base64"})
    wait_until(lambda: _inflight(engine, bundle)["status"] == "Landed", 10, "the bundle")
    (found,) = engine("getBundleStatuses", [bundle])["value"]
    assert found["bundle_id"] == bundle
    assert found["transactions"] == [good_sig]
    assert (
        found["slot"] == _inflight(engine, bundle)["landed_slot"] == status(call, good_sig)["slot"]
    )
    assert found["err"] == {"Ok": None}
    assert found["confirmation_status"] in ("processed", "confirmed", "finalized")
    assert _inflight(engine, "0" * 64)["status"] == "Invalid"
    floor = _tip_floor(localnet)
    assert floor["landed_tips_50th_percentile"] > 0
    assert floor["time"].endswith("Z")


def test_a_protected_send_is_a_bundle_of_one(localnet):
    call = localnet.call
    payer = Keypair()
    signature, encoded = swap(call, payer, 10**8, extra=[tipped(localnet, payer)])
    protected = over_http(localnet.url + "/api/v1/transactions")
    assert protected("sendTransaction", encoded, {"encoding": "base64"}) == signature
    assert landed(call, signature)["err"] is None


def _inflight(engine: Call, bundle: str) -> dict:
    (found,) = engine("getInflightBundleStatuses", [bundle])["value"]
    return found  # type: ignore[no-any-return]


def _tip_floor(process: Process) -> dict:
    with urllib.request.urlopen(process.url + "/api/v1/bundles/tip_floor", timeout=10) as answer:
        (floor,) = json.loads(answer.read())
    return floor  # type: ignore[no-any-return]


def test_the_chains_state_survives_a_restart(tmp_path: Path):
    port = free_port()
    first = Process(tmp_path, port, FAST)
    try:
        before = _contested_state(first)
    finally:
        first.stop()
    second = Process(tmp_path, port, FAST)
    try:
        after = _state_of(second, before["bundle"], before["nonce"])
        assert after["congestion"] == before["congestion"]
        assert after["mev"] == before["mev"]
        assert after["report"] == before["report"]
        assert after["bundle_status"] == before["bundle_status"]
        assert after["nonce_value"] == before["nonce_value"]
        old = {f["slot"]: f["prioritizationFee"] for f in before["fees"][:-2]}
        again = {f["slot"]: f["prioritizationFee"] for f in after["fees"] if f["slot"] in old}
        assert again == {slot: old[slot] for slot in again}  # the slots still in the window
        assert any(again.values())
    finally:
        second.stop()


def _contested_state(process: Process) -> dict:
    call = process.call
    call("localnet_congest", {"level": "busy", "seconds": 600})
    call("localnet_mev", {"rate": "1"})
    payer = Keypair()
    loose = quote(call, pool_address(call, "raydium:SOL-USDC"), SOL, BIG) * 97 // 100
    victim, encoded = swap(call, payer, BIG, loose, price=50_000)
    send(call, encoded)
    landed(call, victim)
    call("localnet_mev", {"rate": "0.5"})
    nonce, _ = nonce_account(call, payer)
    _, bundled = swap(call, payer, 10**8, extra=[tipped(process, payer)], price=50_000)
    bundle = bundles(process)("sendBundle", [bundled], {"encoding": "base64"})
    engine = bundles(process)
    wait_until(lambda: _inflight(engine, bundle)["status"] == "Landed", 10, "the bundle")
    return _state_of(process, bundle, nonce)


def _state_of(process: Process, bundle: str, nonce: Keypair) -> dict:
    call = process.call
    state = call("localnet_status", {})
    return {
        "congestion": state["congestion"],
        "mev": state["mevRate"],
        "report": call("localnet_mevReport", {}),
        "bundle_status": bundles(process)("getBundleStatuses", [bundle])["value"][0]["slot"],
        "nonce_value": nonce_value(call, nonce),
        "fees": call("getRecentPrioritizationFees", []),
        "bundle": bundle,
        "nonce": nonce,
    }
