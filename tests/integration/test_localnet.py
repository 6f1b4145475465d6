"""The real localnet process (`python -m order_engine.localnet serve`) over HTTP JSON-RPC:
shapes, pool accounts, a signed swap landing, a slippage refusal, durability across a restart,
and the admin CLI. Needs no database or broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal

import base58
import pytest
from solders.keypair import Keypair

from order_engine.chain.client import RpcChain
from order_engine.chain.layouts.meteora import LbPair, bitmap_indexes
from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import RAYDIUM_CPMM_PROGRAM
from order_engine.domain.tokens import resolve
from order_engine.ops.launch import free_port
from tests.support.localnet_process import Process
from tests.support.watchers import wait_until
from tests.unit.localnet.support import (
    Call,
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

pytestmark = pytest.mark.integration

SOL = resolve("SOL").mint


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = Process(tmp_path_factory.mktemp("localnet"), free_port())
    yield process
    process.stop()


def _landed(call: Call, signature: str) -> dict:
    def done():
        found = status(call, signature)
        return found if found and found["confirmationStatus"] != "processed" else None

    return wait_until(done, 10, f"{signature} to be confirmed")


def test_slot_and_blockhash_shapes(localnet):
    call = localnet.call
    slot = call("getSlot")
    assert isinstance(slot, int)
    assert slot > 0
    answer = call("getLatestBlockhash", {"commitment": "confirmed"})
    assert answer["context"]["slot"] >= slot
    assert answer["value"]["lastValidBlockHeight"] == answer["context"]["slot"] + 150
    assert len(answer["value"]["blockhash"]) >= 32


def test_pool_accounts_decode(localnet):
    call = localnet.call
    pool = pool_address(call, "raydium:SOL-USDC")
    ((owner, data),) = fetch(call, [pool])  # type: ignore[misc]
    assert owner == str(RAYDIUM_CPMM_PROGRAM)
    state = CpmmPoolState.decode(data)
    vaults = fetch(call, [str(state.token_0_vault), str(state.token_1_vault)])
    assert all(TokenAccount.decode(v[1]).amount > 0 for v in vaults)  # type: ignore[index]
    pair = LbPair.decode(fetch(call, [pool_address(call, "meteora:SOL-USDC")])[0][1])  # type: ignore[index]
    assert bitmap_indexes(pair.bin_array_bitmap)


def test_a_signed_swap_lands_confirmed(localnet):
    call = localnet.call
    pool = pool_address(call, "meteora:SOL-USDC")
    signature, encoded = swap_tx(call, Keypair(), [leg(call, pool, SOL, 10**9, 1)], memo="it-1")
    assert send(call, encoded) == signature
    landed = _landed(call, signature)
    assert landed["err"] is None
    assert landed["status"] == {"Ok": None}
    (entry,) = call("localnet_ledger", {"memo": "it-1"})
    assert entry["signature"] == signature
    assert entry["amountOut"] > 0


def test_the_chain_client_reads_hundreds_of_transactions_within_the_nodes_body_limit(localnet):
    # The signature poller asks what every transaction landed in a slot moved; with hundreds
    # landing at once, one batch of them would pass the node's 50 KiB body limit (HTTP 413).
    call = localnet.call
    pool = pool_address(call, "raydium:SOL-USDC")
    signature, encoded = swap_tx(call, Keypair(), [leg(call, pool, SOL, 10**8, 1)], memo="it-many")
    send(call, encoded)
    _landed(call, signature)
    unknown = [base58.b58encode(os.urandom(64)).decode() for _ in range(400)]
    chain = RpcChain(localnet.url)
    found = chain.many_transaction_balances([*unknown[:200], signature, *unknown[200:]])
    assert list(found) == [signature]
    assert found[signature].err is None
    assert found[signature].fee > 0


def test_a_swap_below_its_minimum_fails_with_6005(localnet):
    call = localnet.call
    pool = pool_address(call, "raydium:SOL-USDC")
    minimum = quote(call, pool, SOL, 10**9) * 2
    _, encoded = swap_tx(call, Keypair(), [leg(call, pool, SOL, 10**9, minimum)])
    with pytest.raises(RpcFailure) as failure:
        send(call, encoded)
    assert failure.value.code == -32002
    assert failure.value.data["err"]["InstructionError"][1] == {"Custom": 6005}


def test_cli_move_changes_the_mid_price(localnet):
    result = localnet.cli("move", "SOL/USDC", "--price", "250")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("moved SOL/USDC to 250")
    mid = Decimal(pool_mid(localnet.call, "raydium:SOL-USDC"))
    assert abs(mid / 250 - 1) < Decimal("0.035")


def test_cli_launch_lists_a_pool(localnet):
    mint = str(Keypair().pubkey())
    result = localnet.cli(
        "launch",
        *("--mint", mint, "--symbol", "NEW", "--decimals", "6", "--quote", "SOL"),
        *("--liquidity", "1000", "--price", "0.001", "--venue", "raydium"),
    )
    assert result.returncode == 0, result.stderr
    address = result.stdout.strip()
    listed = localnet.call(
        "getProgramAccounts",
        str(RAYDIUM_CPMM_PROGRAM),
        {"encoding": "base64", "filters": [{"dataSize": 637}]},
    )
    assert address in {item["pubkey"] for item in listed}
    status_out = localnet.cli("status")
    assert status_out.returncode == 0
    assert "raydium:NEW-SOL" in status_out.stdout


def test_cli_drain_congest_and_fault(localnet):
    drained = localnet.cli("drain", "meteora:RAY-USDC")
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.startswith("drained meteora:RAY-USDC")
    congested = localnet.cli("congest", "--expiry-rate", "0", "--seconds", "1")
    assert congested.returncode == 0, congested.stderr
    planned = localnet.cli("fault", "--memo", "cli-memo", "rpc_unavailable", "drop")
    assert planned.returncode == 0, planned.stderr
    assert "2 queued" in planned.stdout
    refused = localnet.cli("fault", "--memo", "cli-memo", "meteor_strike")
    assert refused.returncode == 1
    assert "unknown fault" in refused.stderr


def test_a_restart_on_the_same_state_dir_still_reports_the_landing(tmp_path):
    port = free_port()
    first = Process(tmp_path, port)
    try:
        call = first.call
        pool = pool_address(call, "raydium:SOL-USDC")
        signature, encoded = swap_tx(call, Keypair(), [leg(call, pool, SOL, 10**9, 1)])
        send(call, encoded)
        _landed(call, signature)
    finally:
        first.stop()
    second = Process(tmp_path, port)
    try:
        found = status(second.call, signature)
        assert found is not None
        assert found["err"] is None
    finally:
        second.stop()
