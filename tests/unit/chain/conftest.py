"""Sample pools and accounts shared by the chain tests: SOL/USDC on both venues, around
150 USDC per SOL (0.15 USDC atoms per lamport)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain.programs import WSOL_MINT
from order_engine.localnet.pool_accounts import (
    CpmmAccounts,
    DlmmAccounts,
    cpmm_pool_accounts,
    dlmm_pool_accounts,
)
from order_engine.venues.math.cpmm import ConstantProductPool
from order_engine.venues.math.dlmm import (
    Bin,
    DlmmParameters,
    DlmmPool,
    VolatilityState,
    bin_id_at_or_below_price,
)

USDC_MINT = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
BIN_STEP = 10


def sample_cpmm_pool() -> ConstantProductPool:
    # 8_000 SOL and 1.2 M USDC at 0.25 %, 12 % of the fee to the protocol, 4 % to the fund.
    return ConstantProductPool.raydium_cpmm(
        8_000 * 10**9, 1_200_000 * 10**6, 2_500, protocol_fee_rate=120_000, fund_fee_rate=40_000
    )


def sample_dlmm_pool() -> DlmmPool:
    """USDC in the 100 bins below the active one, SOL in the 100 above: spans several arrays."""
    active = bin_id_at_or_below_price(Fraction(15, 100), BIN_STEP)  # -1899
    bins = {active: Bin(5 * 10**9, 700 * 10**6)}
    for offset in range(1, 101):
        bins[active - offset] = Bin(0, 1_500 * 10**6 + offset)
        bins[active + offset] = Bin(10 * 10**9 + offset, 0)
    params = DlmmParameters(BIN_STEP, 10_000, variable_fee_control=40_000, protocol_share=500)
    volatility = VolatilityState(20_000, 10_000, active - 1, 1_767_225_600)
    return DlmmPool(params, active, bins, volatility)


@pytest.fixture(scope="session")
def cpmm() -> CpmmAccounts:
    return cpmm_pool_accounts(sample_cpmm_pool(), 0, WSOL_MINT, USDC_MINT, 9, 6)


@pytest.fixture(scope="session")
def dlmm() -> DlmmAccounts:
    return dlmm_pool_accounts(sample_dlmm_pool(), WSOL_MINT, USDC_MINT)


@pytest.fixture(scope="session")
def payer() -> Keypair:
    return Keypair.from_seed(bytes(range(32)))


@pytest.fixture(scope="session")
def blockhash() -> Hash:
    return Hash.hash(b"localnet:blockhash:1")
