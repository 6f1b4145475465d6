"""The real localnet process as a contested chain, over HTTP: block space and the fee market,
recent prioritization fees per account, compute metering and fees, simulateTransaction. Slots
of 100 ms and blockhashes valid for 30 of them keep the waits short. Needs no database or
broker."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from order_engine.chain import tx as txb
from order_engine.chain.programs import RAYDIUM_CPMM_PROGRAM
from order_engine.domain.tokens import resolve
from order_engine.localnet.execution import metering
from order_engine.ops.launch import free_port
from tests.support.localnet_process import Process
from tests.support.watchers import wait_until
from tests.unit.localnet.support import (
    RpcFailure,
    leg,
    pool_address,
    quote,
    send,
    sign,
    status,
    swap_instructions,
)

pytestmark = pytest.mark.integration

SOL = resolve("SOL").mint
FAST = {
    "LOCALNET_SLOT_MS": "100",
    "DEX_BLOCKHASH_VALIDITY_SLOTS": "30",
    "DEX_SWAP_LATENCY_MS": "0-50",
}


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = Process(tmp_path_factory.mktemp("localnet-fees"), free_port(), FAST)
    yield process
    process.stop()


@pytest.fixture
def quiet_after(localnet: Process) -> Iterator[Process]:
    yield localnet
    localnet.call("localnet_congest", {"level": "quiet", "seconds": 1})


def swap(call, payer: Keypair, amount: int, minimum: int = 1, **budget) -> tuple[str, str]:
    pool = pool_address(call, "raydium:SOL-USDC")
    ixs = swap_instructions(payer.pubkey(), [leg(call, pool, SOL, amount, minimum)], **budget)
    return sign(call, payer, ixs)


def landed(call, signature: str) -> dict:
    return wait_until(lambda: status(call, signature), 10, f"{signature} to land")


def test_under_high_a_low_fee_swap_waits_while_a_high_fee_one_lands_then_expires(quiet_after):
    call = quiet_after.call
    congested = quiet_after.cli("congest", "--level", "high", "--seconds", "60")
    assert congested.returncode == 0, congested.stderr
    assert congested.stdout.startswith("congested: level high until")
    assert call("localnet_status", {})["congestion"]["level"] == "high"
    low_sig, low = swap(call, Keypair(), 10**8, price=1)
    high_sig, high = swap(call, Keypair(), 10**8, price=5_000_000)
    send(call, low)
    send(call, high)
    landed(call, high_sig)
    assert status(call, low_sig) is None
    blockhash = call("getLatestBlockhash")["value"]
    wait_until(lambda: call("getSlot") > blockhash["lastValidBlockHeight"], 10, "30 slots")
    assert status(call, low_sig) is None  # never included before its blockhash expired
    assert call("getTransaction", low_sig) is None


def test_recent_fees_per_account_a_hot_pool_dearer_than_the_chain(quiet_after):
    call = quiet_after.call
    pool = pool_address(call, "raydium:SOL-USDC")
    call("localnet_congest", {"level": "high", "seconds": 60})
    first = call("getSlot")
    wait_until(lambda: call("getSlot") >= first + 25, 10, "25 congested slots")
    chain = call("getRecentPrioritizationFees", [])
    hot = call("getRecentPrioritizationFees", [pool])
    assert len(chain) == len(hot) == 150
    assert [c["slot"] for c in chain] == [h["slot"] for h in hot]
    pairs = [
        (c["prioritizationFee"], h["prioritizationFee"])
        for c, h in zip(chain, hot, strict=True)
        if c["slot"] > first
    ][:-1]
    assert len(pairs) >= 20
    assert all(c > 0 for c, _ in pairs)
    assert all(h >= c for c, h in pairs)
    assert sum(h for _, h in pairs) > 1.3 * sum(c for c, _ in pairs)
    with pytest.raises(RpcFailure) as refused:
        call("getRecentPrioritizationFees", [pool] * 129)
    assert refused.value.code == -32602


def _units(memo: str, amount: int) -> int:
    """A SOL -> USDC CPMM swap from a fresh wallet (its wSOL account created), per the table."""
    return (
        3 * metering.BUILTIN_UNITS
        + metering.ATA_CREATE_UNITS
        + metering.SYNC_NATIVE_UNITS
        + metering.ATA_EXISTING_UNITS
        + metering.cpmm_units(amount)
        + metering.CLOSE_ACCOUNT_UNITS
        + metering.memo_units(len(memo))
    )


def test_a_swap_pays_its_exact_fee_and_reports_its_exact_units(localnet):
    call = localnet.call
    signature, encoded = swap(call, Keypair(), 10**9, limit=300_000, price=12_345, memo="fee-it")
    send(call, encoded)
    found = landed(call, signature)
    transaction = call("getTransaction", signature)
    assert transaction["slot"] == found["slot"]
    assert transaction["meta"]["err"] is None
    assert transaction["meta"]["fee"] == 5_000 + math.ceil(300_000 * 12_345 / 10**6)
    assert transaction["meta"]["computeUnitsConsumed"] == _units("fee-it", 10**9)


def test_a_swap_under_its_limit_fails_computational_budget_exceeded_lands_and_pays(localnet):
    call = localnet.call
    payer = Keypair()
    signature, encoded = swap(call, payer, 10**9, limit=50_000, price=20_000)
    with pytest.raises(RpcFailure) as refused:
        send(call, encoded)  # preflight sees it too
    assert refused.value.data["err"] == {"InstructionError": [6, "ComputationalBudgetExceeded"]}
    send(call, encoded, skipPreflight=True)
    found = landed(call, signature)
    assert found["err"] == {"InstructionError": [6, "ComputationalBudgetExceeded"]}
    meta = call("getTransaction", signature)["meta"]
    assert meta["fee"] == 5_000 + 1_000
    assert meta["computeUnitsConsumed"] == 50_000
    assert meta["preBalances"][0] - meta["postBalances"][0] == meta["fee"]


def test_simulate_transaction(localnet):
    call = localnet.call
    payer = Keypair()
    pool = pool_address(call, "raydium:SOL-USDC")
    signature, encoded = swap(call, payer, 10**9, memo="sim")
    answer = call("simulateTransaction", encoded, {"encoding": "base64"})
    assert answer["context"]["slot"] > 0
    value = answer["value"]
    assert value["err"] is None
    assert value["unitsConsumed"] == _units("sim", 10**9)
    assert value["accounts"] is None
    assert value["returnData"] is None
    assert value["innerInstructions"] is None
    assert value["replacementBlockhash"] is None
    assert f"Program {RAYDIUM_CPMM_PROGRAM} success" in value["logs"]
    assert status(call, signature) is None
    minimum = quote(call, pool, SOL, 10**9) * 2
    failing = swap(call, payer, 10**9, minimum)[1]
    value = call("simulateTransaction", failing, {"encoding": "base64"})["value"]
    assert value["err"] == {"InstructionError": [6, {"Custom": 6005}]}
    assert any("Error Number: 6005" in line for line in value["logs"])
    old = sign(call, payer, [txb.memo_instruction("old")], blockhash=str(Hash.default()))[1]
    value = call("simulateTransaction", old, {"encoding": "base64"})["value"]
    assert value["err"] == "BlockhashNotFound"
    config = {"encoding": "base64", "replaceRecentBlockhash": True}
    value = call("simulateTransaction", old, config)["value"]
    assert value["err"] is None
    assert set(value["replacementBlockhash"]) == {"blockhash", "lastValidBlockHeight"}
    with pytest.raises(RpcFailure) as refused:
        call("simulateTransaction", old, {**config, "sigVerify": True})
    assert refused.value.code == -32602
    assert refused.value.message == "sigVerify may not be used with replaceRecentBlockhash"
    unsigned = _unsigned(call, payer)
    value = call("simulateTransaction", unsigned, {"encoding": "base64"})["value"]
    assert value["err"] is None  # signatures are not checked unless asked
    value = call("simulateTransaction", unsigned, {"encoding": "base64", "sigVerify": True})[
        "value"
    ]
    assert value["err"] == "SignatureFailure"


def _unsigned(call, payer: Keypair) -> str:
    blockhash = Hash.from_string(call("getLatestBlockhash")["value"]["blockhash"])
    message = MessageV0.try_compile(payer.pubkey(), [txb.memo_instruction("x")], [], blockhash)
    return txb.encode_transaction(VersionedTransaction.populate(message, [Signature.default()]))
