"""The size of a swap transaction before it is built: `tx.transaction_size` against the signed
bytes, stand-in legs against real ones, and intake's worst case (services/market.py) against
what the builder makes, including an instruction added to the builder later."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain import tx
from order_engine.chain.placeholders import placeholder_key, placeholder_leg
from order_engine.chain.programs import MAX_TRANSACTION_SIZE, WSOL_MINT
from order_engine.domain.tokens import resolve
from order_engine.infra.process import PROCESS
from order_engine.services import market
from order_engine.services.execution import swap_transaction
from tests.unit.chain.conftest import USDC_MINT

SOL, USDC = resolve("SOL"), resolve("USDC")
SETTINGS: Any = SimpleNamespace(mev_protection=True)


@pytest.fixture(autouse=True)
def fresh_size_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sizes anew (a test changes the builder), and the pair has both venues."""
    PROCESS.get("swap_sizes", "worst case", dict).clear()
    monkeypatch.setattr(market, "pair_venues", lambda *_: ["raydium", "meteora"])
    yield
    PROCESS.get("swap_sizes", "worst case", dict).clear()


def split(payer: Keypair, blockhash: Hash, cpmm, dlmm, memo: str):
    raydium = tx.SwapLeg.raydium(cpmm.address, cpmm.state, USDC_MINT, 600 * 10**6, 1)
    meteora = tx.SwapLeg.meteora(dlmm.address, dlmm.pair, USDC_MINT, 400 * 10**6, 1)
    assert len(meteora.bin_array_indexes) == tx.MAX_BIN_ARRAYS_PER_SWAP
    legs = [raydium, meteora]
    instructions = tx.swap_instructions(
        payer.pubkey(), USDC_MINT, WSOL_MINT, 10**9, legs, memo, 400_000, 1_000
    )
    return instructions, legs


def test_the_size_counted_is_the_size_of_the_signed_bytes(payer, blockhash, cpmm, dlmm):
    instructions, _ = split(payer, blockhash, cpmm, dlmm, "order 1")
    signed = tx.sign_transaction(payer, blockhash, instructions)
    assert tx.transaction_size(payer.pubkey(), instructions) == len(bytes(signed))


@pytest.mark.parametrize("memo_bytes", [36, 128, 200])
def test_stand_in_legs_cost_exactly_what_real_legs_cost(payer, blockhash, cpmm, dlmm, memo_bytes):
    memo = "x" * memo_bytes
    instructions, _ = split(payer, blockhash, cpmm, dlmm, memo)
    real = tx.transaction_size(payer.pubkey(), instructions)
    stand_ins = [
        placeholder_leg(v, USDC_MINT, WSOL_MINT, i) for i, v in enumerate(["raydium", "meteora"])
    ]
    payer_key = placeholder_key("payer")
    stand_in = tx.transaction_size(
        payer_key,
        tx.swap_instructions(payer_key, USDC_MINT, WSOL_MINT, 0, stand_ins, memo, 400_000, 1_000),
    )
    assert stand_in == real


def test_the_longest_client_id_fits_the_largest_public_route_and_a_protected_one_says_what_fits():
    worst = swap_transaction.worst_case_size(SOL, USDC, ("meteora", "meteora"), 128, False)
    assert worst <= MAX_TRANSACTION_SIZE
    public = {"tokenIn": SOL, "tokenOut": USDC, "clientOrderId": "x" * 128, "mevProtection": False}
    assert market.size_problems(SETTINGS, public) == {}
    # A protected send's tip (one more key and a System transfer) takes ~47 bytes of the memo's.
    tipped = swap_transaction.worst_case_size(SOL, USDC, ("meteora", "meteora"), 128, True)
    assert tipped - worst > 32
    [message] = market.size_problems(SETTINGS, public | {"mevProtection": True})["clientOrderId"]
    fits = int(message.rsplit("at most ", 1)[1].split(" bytes")[0])
    assert 64 <= fits < 128
    protected = public | {"mevProtection": True, "clientOrderId": "x" * fits}
    assert market.size_problems(SETTINGS, protected) == {}


@pytest.mark.parametrize(("client_id", "size"), [("中" * 128, 384), ("😀" * 128, 512)])
def test_a_memo_that_cannot_fit_is_the_client_ids_problem_with_its_bytes(client_id, size):
    problems = market.size_problems(
        SETTINGS, {"tokenIn": SOL, "tokenOut": USDC, "clientOrderId": client_id}
    )
    [message] = problems["clientOrderId"]
    assert f"({size} bytes of UTF-8)" in message
    assert "1232-byte limit" in message
    fits = int(message.rsplit("at most ", 1)[1].split(" bytes")[0])
    assert fits >= swap_transaction.ORDER_ID_MEMO_BYTES
    assert (
        market.size_problems(
            SETTINGS, {"tokenIn": SOL, "tokenOut": USDC, "clientOrderId": "x" * fits}
        )
        == {}
    )
    too_long = {"tokenIn": SOL, "tokenOut": USDC, "clientOrderId": "x" * (fits + 1)}
    assert "clientOrderId" in market.size_problems(SETTINGS, too_long)


def test_an_instruction_added_to_the_builder_is_counted_by_intake(
    monkeypatch, payer, blockhash, cpmm, dlmm
):
    """Another instruction in every swap (a tip to a new account: one key, a System transfer)
    grows intake's worst case by exactly what it grows a real build by."""
    before_real = tx.transaction_size(
        payer.pubkey(), split(payer, blockhash, cpmm, dlmm, "x" * 128)[0]
    )
    before_worst = swap_transaction.worst_case_size(USDC, SOL, ("raydium", "meteora"), 128, False)
    swap_instructions = tx.swap_instructions
    tip_account = Pubkey.from_string("96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5")

    def with_a_tip(owner, *args, **kwargs):
        return [
            *swap_instructions(owner, *args, **kwargs),
            tx.system_transfer(owner, tip_account, 10_000),
        ]

    monkeypatch.setattr(tx, "swap_instructions", with_a_tip)
    after_real = tx.transaction_size(
        payer.pubkey(), split(payer, blockhash, cpmm, dlmm, "x" * 128)[0]
    )
    after_worst = swap_transaction.worst_case_size(USDC, SOL, ("raydium", "meteora"), 128, False)
    assert after_real - before_real == after_worst - before_worst > 32
    problems = market.size_problems(
        SETTINGS, {"tokenIn": SOL, "tokenOut": USDC, "clientOrderId": "x" * 128}
    )
    assert "clientOrderId" in problems


def test_a_pair_whose_swap_cannot_fit_even_with_the_orders_own_id_is_refused_on_token_out(
    monkeypatch,
):
    monkeypatch.setattr(swap_transaction, "SIZE_MARGIN_BYTES", 400)
    problems = market.size_problems(
        SETTINGS, {"tokenIn": SOL, "tokenOut": USDC, "clientOrderId": None}
    )
    assert "no order of this pair can be sent" in problems["tokenOut"][0]


def test_the_largest_route_takes_two_legs_dlmm_first_and_dlmm_for_pools_not_seen_yet():
    assert market.worst_venues(["raydium", "meteora"]) == ("meteora", "raydium")
    assert market.worst_venues(["raydium"]) == ("raydium", "meteora")
    assert market.worst_venues(["raydium", "raydium", "raydium"]) == ("raydium", "raydium")
    assert market.worst_venues(None) == ("meteora", "meteora")
