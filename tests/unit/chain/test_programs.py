"""Program ids, discriminators and ATA derivation against docs/localnet.md."""

from __future__ import annotations

import hashlib

import pytest
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from order_engine.chain import programs
from tests.unit.chain.conftest import USDC_MINT


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("global", "swap_base_input", programs.CPMM_SWAP_BASE_INPUT_DISCRIMINATOR),
        ("global", "swap_base_output", programs.CPMM_SWAP_BASE_OUTPUT_DISCRIMINATOR),
        ("account", "PoolState", programs.POOL_STATE_DISCRIMINATOR),
        ("account", "AmmConfig", programs.AMM_CONFIG_DISCRIMINATOR),
        ("account", "ObservationState", programs.OBSERVATION_STATE_DISCRIMINATOR),
        ("global", "swap", programs.DLMM_SWAP_DISCRIMINATOR),
        ("account", "LbPair", programs.LB_PAIR_DISCRIMINATOR),
        ("account", "BinArray", programs.BIN_ARRAY_DISCRIMINATOR),
    ],
)
def test_discriminators_follow_anchors_rule(namespace, name, expected):
    digest = hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8]
    assert expected == digest
    assert programs.anchor_discriminator(namespace, name) == digest


def test_discriminators_match_the_documented_values():
    assert programs.CPMM_SWAP_BASE_INPUT_DISCRIMINATOR.hex() == "8fbe5adac41e33de"
    assert list(programs.DLMM_SWAP_DISCRIMINATOR) == [248, 198, 158, 145, 225, 117, 135, 200]
    assert list(programs.LB_PAIR_DISCRIMINATOR) == [33, 11, 49, 98, 181, 101, 177, 13]
    assert list(programs.BIN_ARRAY_DISCRIMINATOR) == [92, 142, 92, 220, 5, 148, 70, 181]
    assert list(programs.POOL_STATE_DISCRIMINATOR) == [247, 237, 227, 245, 215, 195, 222, 70]
    assert list(programs.AMM_CONFIG_DISCRIMINATOR) == [218, 244, 33, 104, 203, 203, 43, 111]


def test_program_ids_are_the_mainnet_ones():
    assert str(programs.SYSTEM_PROGRAM) == "11111111111111111111111111111111"
    assert str(programs.RAYDIUM_CPMM_PROGRAM) == "CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C"
    assert str(programs.METEORA_DLMM_PROGRAM) == "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo"
    assert str(programs.WSOL_MINT) == "So11111111111111111111111111111111111111112"


def test_dlmm_event_authority_is_the_mainnet_pda():
    assert str(programs.DLMM_EVENT_AUTHORITY) == "D1ZN9Wj1fRSUQfCjhvnu1hqDMT7hzjzBBpi12nVniYD6"


def test_associated_token_address_matches_solders():
    wallet = Pubkey.from_string("2NLopN47Bf12Yi4iNWaWkLdNLf4XRWv2j3c14Yzix5DF")
    for mint in (programs.WSOL_MINT, USDC_MINT):
        expected = get_associated_token_address(wallet, mint)
        assert programs.associated_token_address(wallet, mint) == expected


def test_associated_token_address_depends_on_wallet_and_mint():
    wallet_a, wallet_b = Pubkey.new_unique(), Pubkey.new_unique()
    addresses = {
        programs.associated_token_address(wallet, mint)
        for wallet in (wallet_a, wallet_b)
        for mint in (programs.WSOL_MINT, USDC_MINT)
    }
    assert len(addresses) == 4
