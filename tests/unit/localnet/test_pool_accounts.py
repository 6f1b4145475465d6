"""The pool accounts the localnet serves sit at the programs' canonical addresses."""

from __future__ import annotations

import pytest

from order_engine.chain.layouts.pdas import (
    amm_config_address,
    cpmm_authority,
    cpmm_pool_address,
    cpmm_vault_address,
    dlmm_bin_array_address,
    dlmm_lb_pair_address,
    dlmm_oracle_address,
    dlmm_reserve_address,
)
from order_engine.chain.programs import (
    METEORA_DLMM_PROGRAM,
    RAYDIUM_CPMM_PROGRAM,
    TOKEN_PROGRAM,
    WSOL_MINT,
)
from order_engine.localnet.pool_accounts import (
    CpmmAccounts,
    DlmmAccounts,
    cpmm_pool_accounts,
    dlmm_pool_accounts,
)
from order_engine.venues.math.dlmm import price_q64_from_id
from tests.unit.chain.conftest import USDC_MINT, sample_cpmm_pool, sample_dlmm_pool


@pytest.fixture(scope="module")
def cpmm() -> CpmmAccounts:
    return cpmm_pool_accounts(sample_cpmm_pool(), 0, WSOL_MINT, USDC_MINT, 9, 6)


@pytest.fixture(scope="module")
def dlmm() -> DlmmAccounts:
    return dlmm_pool_accounts(sample_dlmm_pool(), WSOL_MINT, USDC_MINT)


def test_cpmm_pool_accounts_are_canonical(cpmm):
    config_address = amm_config_address(0)
    assert cpmm.address == cpmm_pool_address(config_address, WSOL_MINT, USDC_MINT)
    assert cpmm.state.amm_config == cpmm.config_address == config_address
    assert cpmm.state.token_0_vault == cpmm_vault_address(cpmm.address, WSOL_MINT)
    assert cpmm.vault_0.owner == cpmm.vault_1.owner == cpmm_authority()
    assert cpmm.state.auth_bump == 253
    served = cpmm.accounts()
    assert served[cpmm.address] == (RAYDIUM_CPMM_PROGRAM, cpmm.state.encode())
    assert served[cpmm.state.token_1_vault] == (TOKEN_PROGRAM, cpmm.vault_1.encode())
    assert len(served) == 5


def test_dlmm_accounts_are_canonical(dlmm):
    pure = sample_dlmm_pool()
    assert dlmm.address == dlmm_lb_pair_address(WSOL_MINT, USDC_MINT, 10)
    assert dlmm.pair.reserve_x == dlmm_reserve_address(dlmm.address, WSOL_MINT)
    assert dlmm.pair.oracle == dlmm_oracle_address(dlmm.address)
    assert dlmm.reserve_x.amount == sum(b.amount_x for b in pure.bins.values())
    assert dlmm.reserve_y.amount == sum(b.amount_y for b in pure.bins.values())
    assert dlmm.reserve_x.owner == dlmm.address
    array = dlmm.arrays[1]
    assert array.lb_pair == dlmm.address
    # Every bin of a served array carries its price, empty or not.
    prices = [price for _, _, price in array.bins]
    assert prices == [price_q64_from_id(array.first_bin_id + i, 10) for i in range(70)]
    served = dlmm.accounts()
    assert served[dlmm_bin_array_address(dlmm.address, -28)] == (
        METEORA_DLMM_PROGRAM,
        array.encode(),
    )
    assert len(served) == 3 + 4
