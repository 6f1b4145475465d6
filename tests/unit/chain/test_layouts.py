"""Account layouts (sizes, discriminators, byte offsets from the programs' sources, keyed in
`order_engine.chain.layouts`), PDAs, bitmap helpers and the decoded views' pool math."""

from __future__ import annotations

import dataclasses

import pytest
from solders.pubkey import Pubkey

from order_engine.chain.layouts.codec import AccountDecodeError
from order_engine.chain.layouts.meteora import (
    BinArray,
    LbPair,
    bin_array_index,
    bitmap_indexes,
    bitmap_with,
    swap_bin_array_indexes,
)
from order_engine.chain.layouts.pdas import (
    amm_config_address,
    cpmm_authority,
    cpmm_authority_bump,
    cpmm_lp_mint_address,
    cpmm_observation_address,
    cpmm_pool_address,
    cpmm_vault_address,
    dlmm_bin_array_address,
    dlmm_bitmap_extension_address,
    dlmm_lb_pair_address,
    dlmm_oracle_address,
    dlmm_reserve_address,
)
from order_engine.chain.layouts.raydium import AmmConfig, CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.pools import cpmm_pool, dlmm_pool
from order_engine.chain.programs import (
    LB_PAIR_DISCRIMINATOR,
    METEORA_DLMM_PROGRAM,
    POOL_STATE_DISCRIMINATOR,
    RAYDIUM_CPMM_PROGRAM,
    WSOL_MINT,
)
from order_engine.venues.math.dlmm import price_q64_from_id
from tests.unit.chain.conftest import USDC_MINT, sample_cpmm_pool, sample_dlmm_pool


def keys(n: int) -> list[Pubkey]:
    return [Pubkey(bytes([i + 1]) * 32) for i in range(n)]


def u(data: bytes, offset: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(data[offset : offset + size], "little", signed=signed)


def key_at(data: bytes, offset: int) -> Pubkey:
    return Pubkey.from_bytes(data[offset : offset + 32])


# --- TokenAccount --------------------------------------------------------------------------------


def test_token_account_round_trip_and_offsets():
    mint, owner, delegate, closer = keys(4)
    account = TokenAccount(
        mint,
        owner,
        123_456_789,
        is_native=2_039_280,
        delegate=delegate,
        state=2,
        delegated_amount=77,
        close_authority=closer,
    )
    data = account.encode()
    assert len(data) == 165
    assert TokenAccount.decode(data) == account
    assert key_at(data, 0) == mint
    assert key_at(data, 32) == owner
    assert u(data, 64, 8) == 123_456_789
    assert u(data, 72, 4) == 1
    assert key_at(data, 76) == delegate
    assert data[108] == 2
    assert u(data, 109, 4) == 1
    assert u(data, 113, 8) == 2_039_280
    assert u(data, 121, 8) == 77
    assert u(data, 129, 4) == 1
    assert key_at(data, 133) == closer


def test_token_account_defaults_are_an_initialized_plain_account():
    account = TokenAccount(*keys(2), 5)
    data = account.encode()
    assert TokenAccount.decode(data) == account
    assert data[108] == 1
    assert u(data, 72, 4) == u(data, 109, 4) == u(data, 129, 4) == 0


def test_token_account_decode_refuses_wrong_size_and_bad_option_tag():
    data = bytearray(TokenAccount(*keys(2), 5).encode())
    with pytest.raises(AccountDecodeError, match="165"):
        TokenAccount.decode(bytes(data[:-1]))
    data[109] = 7
    with pytest.raises(AccountDecodeError, match="tag"):
        TokenAccount.decode(bytes(data))


def test_encode_refuses_out_of_range_integers():
    with pytest.raises(ValueError, match="TokenAccount"):
        TokenAccount(*keys(2), 1 << 64).encode()


# --- Raydium CPMM --------------------------------------------------------------------------------


def full_pool_state() -> CpmmPoolState:
    k = keys(10)
    return CpmmPoolState(
        *k,
        auth_bump=253,
        status=4,
        lp_mint_decimals=9,
        mint_0_decimals=9,
        mint_1_decimals=6,
        lp_supply=10**12,
        protocol_fees_token_0=11,
        protocol_fees_token_1=12,
        fund_fees_token_0=13,
        fund_fees_token_1=14,
        open_time=1_767_225_600,
        recent_epoch=800,
        creator_fee_on=1,
        enable_creator_fee=True,
        creator_fees_token_0=15,
        creator_fees_token_1=16,
    )


def test_pool_state_round_trip_and_offsets():
    state = full_pool_state()
    data = state.encode()
    assert len(data) == 637
    assert data[:8] == POOL_STATE_DISCRIMINATOR
    assert CpmmPoolState.decode(data) == state
    k = keys(10)
    for i, offset in enumerate(range(8, 328, 32)):
        assert key_at(data, offset) == k[i]
    assert key_at(data, 168) == state.token_0_mint
    assert key_at(data, 200) == state.token_1_mint
    assert key_at(data, 296) == state.observation_key
    assert (data[328], data[329], data[330], data[331], data[332]) == (253, 4, 9, 9, 6)
    assert u(data, 333, 8) == 10**12
    assert [u(data, off, 8) for off in (341, 349, 357, 365)] == [11, 12, 13, 14]
    assert u(data, 373, 8) == 1_767_225_600
    assert u(data, 381, 8) == 800
    assert (data[389], data[390]) == (1, 1)
    assert (u(data, 397, 8), u(data, 405, 8)) == (15, 16)
    assert data[413:] == bytes(224)


def test_pool_state_swap_status_bit():
    state = full_pool_state()
    assert not state.swap_enabled
    assert dataclasses.replace(state, status=3).swap_enabled


def test_pool_state_decode_refuses_wrong_size_and_discriminator():
    data = full_pool_state().encode()
    with pytest.raises(AccountDecodeError, match="637"):
        CpmmPoolState.decode(data + b"\0")
    with pytest.raises(AccountDecodeError, match="discriminator"):
        CpmmPoolState.decode(LB_PAIR_DISCRIMINATOR + data[8:])


def test_amm_config_round_trip_and_offsets():
    owner, fund_owner = keys(2)
    config = AmmConfig(
        2,
        10_000,
        120_000,
        40_000,
        bump=250,
        disable_create_pool=True,
        create_pool_fee=150_000_000,
        protocol_owner=owner,
        fund_owner=fund_owner,
        creator_fee_rate=9,
    )
    data = config.encode()
    assert len(data) == 236
    assert AmmConfig.decode(data) == config
    assert (data[8], data[9], u(data, 10, 2)) == (250, 1, 2)
    assert [u(data, off, 8) for off in (12, 20, 28, 36)] == [10_000, 120_000, 40_000, 150_000_000]
    assert key_at(data, 44) == owner
    assert key_at(data, 76) == fund_owner
    assert u(data, 108, 8) == 9


def test_amm_config_bump_defaults_to_its_pda_bump():
    config = AmmConfig(0, 2_500)
    address, bump = Pubkey.find_program_address(
        [b"amm_config", (0).to_bytes(2, "big")], RAYDIUM_CPMM_PROGRAM
    )
    assert config.bump == bump
    assert AmmConfig.decode(config.encode()) == config
    assert amm_config_address(0) == address


def test_amm_config_decode_refuses_a_pool_state():
    with pytest.raises(AccountDecodeError):
        AmmConfig.decode(full_pool_state().encode()[:236])


# --- Meteora DLMM --------------------------------------------------------------------------------


def full_lb_pair() -> LbPair:
    x_mint, y_mint, reserve_x, reserve_y, oracle, base, creator = keys(7)
    return LbPair(
        base_factor=10_000,
        filter_period=30,
        decay_period=600,
        reduction_factor=5_000,
        variable_fee_control=40_000,
        max_volatility_accumulator=350_000,
        min_bin_id=-443_636,
        max_bin_id=443_636,
        protocol_share=500,
        base_fee_power_factor=1,
        volatility_accumulator=20_000,
        volatility_reference=10_000,
        index_reference=-1_900,
        last_update_timestamp=1_767_225_600,
        active_id=-1_899,
        bin_step=10,
        status=1,
        token_x_mint=x_mint,
        token_y_mint=y_mint,
        reserve_x=reserve_x,
        reserve_y=reserve_y,
        oracle=oracle,
        bin_array_bitmap=bitmap_with([-28, -27, 0, 511]),
        bump_seed=254,
        pair_type=1,
        activation_type=1,
        protocol_fee_x=21,
        protocol_fee_y=22,
        last_updated_at=1_767_225_601,
        base_key=base,
        creator=creator,
        activation_point=99,
        token_mint_x_program_flag=0,
        token_mint_y_program_flag=1,
        version=1,
    )


def test_lb_pair_round_trip_and_offsets():
    pair = full_lb_pair()
    data = pair.encode()
    assert len(data) == 904
    assert data[:8] == LB_PAIR_DISCRIMINATOR
    assert LbPair.decode(data) == pair
    assert [u(data, off, 2) for off in (8, 10, 12, 14)] == [10_000, 30, 600, 5_000]
    assert (u(data, 16, 4), u(data, 20, 4)) == (40_000, 350_000)
    assert (u(data, 24, 4, True), u(data, 28, 4, True)) == (-443_636, 443_636)
    assert (u(data, 32, 2), data[34]) == (500, 1)
    assert (u(data, 40, 4), u(data, 44, 4), u(data, 48, 4, True)) == (20_000, 10_000, -1_900)
    assert u(data, 56, 8, True) == 1_767_225_600
    assert (data[72], u(data, 73, 2), data[75]) == (254, 10, 1)
    assert u(data, 76, 4, True) == -1_899
    assert u(data, 80, 2) == 10
    assert data[82] == 1
    assert key_at(data, 88) == pair.token_x_mint
    assert key_at(data, 120) == pair.token_y_mint
    assert key_at(data, 152) == pair.reserve_x
    assert key_at(data, 184) == pair.reserve_y
    assert (u(data, 216, 8), u(data, 224, 8)) == (21, 22)
    assert key_at(data, 552) == pair.oracle
    assert tuple(u(data, 584 + 8 * w, 8) for w in range(16)) == pair.bin_array_bitmap
    assert u(data, 712, 8, True) == 1_767_225_601
    assert key_at(data, 784) == pair.base_key
    assert u(data, 816, 8) == 99
    assert key_at(data, 848) == pair.creator
    assert (data[880], data[881], data[882]) == (0, 1, 1)


def test_lb_pair_decode_refuses_wrong_size_and_discriminator():
    data = full_lb_pair().encode()
    with pytest.raises(AccountDecodeError, match="904"):
        LbPair.decode(data[:900])
    with pytest.raises(AccountDecodeError, match="discriminator"):
        LbPair.decode(POOL_STATE_DISCRIMINATOR + data[8:])


def test_lb_pair_needs_sixteen_bitmap_words():
    with pytest.raises(ValueError, match="16"):
        dataclasses.replace(full_lb_pair(), bin_array_bitmap=(0,) * 15)


def test_bin_array_round_trip_and_offsets():
    lb_pair = keys(1)[0]
    bins = tuple(
        (i * 1_000, i * 7, price_q64_from_id(-28 * 70 + i, 10)) if i % 3 else (0, 0, 0)
        for i in range(70)
    )
    array = BinArray(-28, lb_pair, bins, version=2)
    data = array.encode()
    assert len(data) == 10_136
    assert BinArray.decode(data) == array
    assert u(data, 8, 8, True) == -28
    assert data[16] == 2
    assert key_at(data, 24) == lb_pair
    for i, (amount_x, amount_y, price) in enumerate(bins):
        offset = 56 + 144 * i
        assert u(data, offset, 8) == amount_x
        assert u(data, offset + 8, 8) == amount_y
        assert u(data, offset + 16, 16) == price


def test_bin_array_needs_seventy_bins_and_its_discriminator():
    with pytest.raises(ValueError, match="70"):
        BinArray(0, keys(1)[0], ((0, 0, 0),) * 69)
    data = BinArray(0, keys(1)[0], ((0, 0, 0),) * 70).encode()
    with pytest.raises(AccountDecodeError, match="discriminator"):
        BinArray.decode(LB_PAIR_DISCRIMINATOR + data[8:])
    with pytest.raises(AccountDecodeError, match="10136"):
        BinArray.decode(data[:-1])


# --- bin arrays and the bitmap --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bin_id", "index"), [(0, 0), (69, 0), (70, 1), (-1, -1), (-70, -1), (-71, -2), (-1899, -28)]
)
def test_bin_array_index_rounds_towards_minus_infinity(bin_id, index):
    assert bin_array_index(bin_id) == index


def test_bitmap_bit_i_is_array_index_i_minus_512():
    assert bitmap_with([-512]) == (1,) + (0,) * 15
    assert bitmap_with([0]) == (0,) * 8 + (1,) + (0,) * 7
    assert bitmap_with([511]) == (0,) * 15 + (1 << 63,)


def test_bitmap_round_trip_and_range():
    indexes = [-512, -300, -28, -1, 0, 1, 63, 64, 511]
    assert bitmap_indexes(bitmap_with(reversed(indexes))) == indexes
    assert bitmap_indexes(bitmap_with([])) == []
    for outside in (-513, 512):
        with pytest.raises(ValueError, match="bitmap"):
            bitmap_with([outside])


def test_swap_bin_array_indexes_walk_from_the_active_array():
    pair = dataclasses.replace(
        full_lb_pair(), active_id=-1_899, bin_array_bitmap=bitmap_with(range(-32, -22))
    )
    assert swap_bin_array_indexes(pair, swap_for_y=True) == [-28, -29, -30]
    assert swap_bin_array_indexes(pair, swap_for_y=False) == [-28, -27, -26]
    sparse = dataclasses.replace(pair, bin_array_bitmap=bitmap_with([-31, -25]))
    assert swap_bin_array_indexes(sparse, swap_for_y=True) == [-31]
    assert swap_bin_array_indexes(sparse, swap_for_y=False, limit=1) == [-25]


# --- PDAs --------------------------------------------------------------------------------------


def test_cpmm_authority_is_the_mainnet_pda():
    assert str(cpmm_authority()) == "GpMZbSM2GgvTKHJirzeGfMFoaZ8UR2X7F4v8vHTvxFbL"
    assert cpmm_authority_bump() == 253


def test_amm_config_index_zero_is_the_mainnet_config():
    assert str(amm_config_address(0)) == "D4FPEruKEHrG5TenZ2mpDGEfu1iUvTiqBxvpU8HLBvC2"
    assert len({amm_config_address(i) for i in range(3)}) == 3


def test_cpmm_pdas_follow_their_seeds():
    config = amm_config_address(0)
    pool = cpmm_pool_address(config, WSOL_MINT, USDC_MINT)

    def pda(*seeds: bytes) -> Pubkey:
        return Pubkey.find_program_address(list(seeds), RAYDIUM_CPMM_PROGRAM)[0]

    assert pool == pda(b"pool", bytes(config), bytes(WSOL_MINT), bytes(USDC_MINT))
    assert pool != cpmm_pool_address(config, USDC_MINT, WSOL_MINT)
    assert cpmm_vault_address(pool, USDC_MINT) == pda(b"pool_vault", bytes(pool), bytes(USDC_MINT))
    assert cpmm_observation_address(pool) == pda(b"observation", bytes(pool))
    assert cpmm_lp_mint_address(pool) == pda(b"pool_lp_mint", bytes(pool))


def test_dlmm_pdas_follow_their_seeds():
    pair = dlmm_lb_pair_address(WSOL_MINT, USDC_MINT, 10)
    assert pair == dlmm_lb_pair_address(USDC_MINT, WSOL_MINT, 10)
    assert pair != dlmm_lb_pair_address(WSOL_MINT, USDC_MINT, 20)
    low, high = sorted((bytes(WSOL_MINT), bytes(USDC_MINT)))

    def pda(*seeds: bytes) -> Pubkey:
        return Pubkey.find_program_address(list(seeds), METEORA_DLMM_PROGRAM)[0]

    assert pair == pda(low, high, (10).to_bytes(2, "little"))
    assert dlmm_reserve_address(pair, WSOL_MINT) == pda(bytes(pair), bytes(WSOL_MINT))
    assert dlmm_oracle_address(pair) == pda(b"oracle", bytes(pair))
    assert dlmm_bitmap_extension_address(pair) == pda(b"bitmap", bytes(pair))
    assert dlmm_bin_array_address(pair, -28) == pda(
        b"bin_array", bytes(pair), (-28).to_bytes(8, "little", signed=True)
    )


# --- accounts <-> pure math --------------------------------------------------------------------


def test_cpmm_pool_from_accounts_quotes_like_the_pure_pool(cpmm):
    pure = sample_cpmm_pool()
    from_accounts = cpmm_pool(cpmm.state, cpmm.config, cpmm.vault_0, cpmm.vault_1)
    assert from_accounts == pure
    for amount, swap_for_y in ((10**9, True), (25 * 10**9, True), (3_000 * 10**6, False)):
        assert from_accounts.swap_exact_in(amount, swap_for_y) == pure.swap_exact_in(
            amount, swap_for_y
        )


def test_cpmm_pool_reserves_exclude_fees_owed(cpmm):
    state = dataclasses.replace(
        cpmm.state,
        protocol_fees_token_0=100,
        fund_fees_token_0=20,
        creator_fees_token_0=3,
        protocol_fees_token_1=7,
    )
    vault_0 = dataclasses.replace(cpmm.vault_0, amount=cpmm.vault_0.amount + 123)
    vault_1 = dataclasses.replace(cpmm.vault_1, amount=cpmm.vault_1.amount + 7)
    assert cpmm_pool(state, cpmm.config, vault_0, vault_1) == sample_cpmm_pool()


def test_cpmm_pool_refuses_vaults_of_the_wrong_mints(cpmm):
    with pytest.raises(ValueError, match="mints"):
        cpmm_pool(cpmm.state, cpmm.config, cpmm.vault_1, cpmm.vault_0)


def test_dlmm_pool_round_trips_through_accounts(dlmm):
    pure = sample_dlmm_pool()
    assert [array.index for array in dlmm.arrays] == [-29, -28, -27, -26]
    assert bitmap_indexes(dlmm.pair.bin_array_bitmap) == [-29, -28, -27, -26]
    decoded_pair = LbPair.decode(dlmm.pair.encode())
    decoded_arrays = [BinArray.decode(array.encode()) for array in dlmm.arrays]
    rebuilt = dlmm_pool(decoded_pair, decoded_arrays)
    assert rebuilt == pure
    now = pure.volatility.last_update_timestamp + 5
    for amount, swap_for_y in ((10**9, True), (400 * 10**9, True), (90_000 * 10**6, False)):
        assert rebuilt.swap_exact_in(amount, swap_for_y, now) == pure.swap_exact_in(
            amount, swap_for_y, now
        )


def test_dlmm_pool_drops_empty_bins_and_refuses_duplicate_arrays(dlmm):
    with pytest.raises(ValueError, match="twice"):
        dlmm_pool(dlmm.pair, [dlmm.arrays[0], dlmm.arrays[0]])
    assert dlmm_pool(dlmm.pair, []).bins == {}
