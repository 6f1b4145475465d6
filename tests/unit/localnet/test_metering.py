"""Compute metering: the table, the limit and the fee, and what a landed swap reports."""

from __future__ import annotations

import math

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.transaction import VersionedTransaction

from order_engine.chain import tx as txb
from order_engine.localnet.execution import metering
from order_engine.localnet.instructions import decode_instructions, decode_transaction
from tests.unit.localnet.conftest import SOL
from tests.unit.localnet.support import leg, pool_address, send, sign, status, swap_instructions


def decoded(payer: Keypair, instructions) -> list:
    message = MessageV0.try_compile(payer.pubkey(), instructions, [], Hash.default())
    return decode_instructions(decode_transaction(bytes(VersionedTransaction(message, [payer]))))


def test_the_table_holds_the_public_readings():
    assert metering.BUILTIN_UNITS == 150
    assert metering.memo_units(32) == 12_680  # mainnet: 12,724 for a 32-byte memo
    assert metering.memo_units(60) == 22_900  # mainnet: 22,940 for 60 bytes
    assert metering.cpmm_units(10**9) == 38_500 + 15 * 30  # mainnet: 39,493
    assert metering.dlmm_units(0) == 55_000
    assert metering.dlmm_units(3) == 55_000 + 3 * 1_500


def test_the_limit_defaults_to_200k_per_instruction_and_is_capped(payer):
    transfer = txb.system_transfer(payer.pubkey(), Keypair().pubkey(), 1)
    two = decoded(payer, [transfer, txb.memo_instruction("x")])
    assert metering.budget(1, two) == metering.Budget(400_000, 0, 5_000)
    priced = decoded(payer, [txb.set_compute_unit_price(3), transfer])
    assert metering.budget(1, priced).limit == 200_000  # compute budget ones do not count
    many = decoded(payer, [txb.memo_instruction(str(i)) for i in range(8)])
    assert metering.budget(1, many).limit == 1_400_000
    asked = decoded(payer, [txb.set_compute_unit_limit(2_000_000), transfer])
    assert metering.budget(1, asked).limit == 1_400_000


@pytest.mark.parametrize(("limit", "price"), [(300_000, 12_345), (1, 999_999), (250_000, 0)])
def test_the_fee_is_the_base_fee_plus_the_ceiling_of_limit_times_price(payer, limit, price):
    ixs = decoded(payer, [txb.set_compute_unit_limit(limit), txb.set_compute_unit_price(price)])
    fee = metering.budget(2, ixs).fee
    assert fee == 2 * 5_000 + math.ceil(limit * price / 1_000_000)


def expected_units(memo: str, amount: int, wsol_exists: bool) -> int:
    """A SOL -> USDC CPMM swap in the engine's instruction order, per the table."""
    return (
        2 * metering.BUILTIN_UNITS  # compute budget
        + (metering.ATA_EXISTING_UNITS if wsol_exists else metering.ATA_CREATE_UNITS)
        + metering.BUILTIN_UNITS  # transfer into wSOL
        + metering.SYNC_NATIVE_UNITS
        + metering.ATA_EXISTING_UNITS  # USDC: the faucet made it
        + metering.cpmm_units(amount)
        + metering.CLOSE_ACCOUNT_UNITS
        + metering.memo_units(len(memo))
    )


def test_a_landed_swap_reports_its_fee_and_the_units_it_consumed(node, payer):
    _, clock, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    ixs = swap_instructions(
        payer.pubkey(), [leg(call, pool, SOL, 10**9, 1)], 300_000, 12_345, memo="metered"
    )
    signature, encoded = sign(call, payer, ixs)
    send(call, encoded)
    clock.advance_ms(1_000)
    meta = call("getTransaction", signature)["meta"]
    assert meta["err"] is None
    assert meta["fee"] == 5_000 + math.ceil(300_000 * 12_345 / 1_000_000)
    assert meta["computeUnitsConsumed"] == expected_units("metered", 10**9, wsol_exists=False)


def test_a_swap_over_its_limit_fails_at_that_instruction_lands_and_pays(node, payer):
    _, clock, call = node
    pool = pool_address(call, "raydium:SOL-USDC")
    ixs = swap_instructions(payer.pubkey(), [leg(call, pool, SOL, 10**9, 1)], 40_000, 1_000)
    signature, encoded = sign(call, payer, ixs)
    send(call, encoded, skipPreflight=True)
    clock.advance_ms(1_000)
    swap_index = 6  # limit, price, wSOL ATA, transfer, sync, USDC ATA, then the swap
    err = {"InstructionError": [swap_index, "ComputationalBudgetExceeded"]}
    assert status(call, signature)["err"] == err
    meta = call("getTransaction", signature)["meta"]
    assert meta["fee"] == 5_000 + 40
    assert meta["computeUnitsConsumed"] == 40_000
