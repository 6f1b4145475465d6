"""Binary layouts of the accounts a swap reads, their PDAs, and the bridge to the pure pool math.

Each layout is a frozen dataclass with `encode() -> bytes` and `decode(data)`; decoding checks the
size and, for Anchor accounts, the 8-byte discriminator, and raises `AccountDecodeError`
otherwise. Offsets are those of /work/shared/research/solana-rpc.md (source keys in brackets):

* `TokenAccount`  -- SPL Token account, 165 bytes [SPL token/program/src/state.rs] (§6);
* `CpmmPoolState`, `AmmConfig` -- Raydium CP-Swap, 637 and 236 bytes [RAY states/pool.rs,
  states/config.rs] (§7);
* `LbPair`, `BinArray` -- Meteora DLMM, 904 and 10 136 bytes [MET IDL v0.12.0] (§8).

Only the fields a swap, a quote or the localnet needs are modelled. Bytes of unmodelled fields
(reward infos, Bin liquidity and fee accumulators, padding) are written as zeros and ignored when
decoding, so `decode(x.encode()) == x` holds but foreign account bytes do not round-trip exactly.

`cpmm_pool` / `dlmm_pool` turn decoded accounts into `order_engine.venues.math` objects, which is
how the engine quotes; `cpmm_pool_accounts` / `dlmm_pool_accounts` go the other way, which is how
the localnet serves its pools. PDA derivations are cached: each is a bump search of up to 255
SHA-256 hashes and the same few addresses are asked for on every order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from solders.pubkey import Pubkey

from order_engine.chain.programs import (
    AMM_CONFIG_DISCRIMINATOR,
    BIN_ARRAY_DISCRIMINATOR,
    LB_PAIR_DISCRIMINATOR,
    METEORA_DLMM_PROGRAM,
    OBSERVATION_STATE_DISCRIMINATOR,
    POOL_STATE_DISCRIMINATOR,
    RAYDIUM_CPMM_PROGRAM,
    TOKEN_PROGRAM,
)
from order_engine.venues.math.cpmm import CPMM_FEE_RATE_DENOMINATOR, ConstantProductPool
from order_engine.venues.math.dlmm import (
    MAX_BIN_ID,
    MIN_BIN_ID,
    Bin,
    DlmmParameters,
    DlmmPool,
    VolatilityState,
    price_q64_from_id,
)

_ZERO_KEY = Pubkey.default()
_U64_MASK = (1 << 64) - 1


class AccountDecodeError(ValueError):
    """Account data that is not the expected layout: wrong size, discriminator or tag."""


def _key(raw: bytes) -> Pubkey:
    return Pubkey.from_bytes(raw)


def _check_size(name: str, data: bytes, size: int) -> None:
    if len(data) != size:
        raise AccountDecodeError(f"{name} is {size} bytes, got {len(data)}")


def _check_discriminator(name: str, data: bytes, expected: bytes) -> None:
    if data[:8] != expected:
        raise AccountDecodeError(f"not a {name}: discriminator {bytes(data[:8]).hex()}")


def _pack(name: str, layout: struct.Struct, *values: object) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:  # an int out of its field's range
        raise ValueError(f"cannot encode {name}: {exc}") from exc


# --- SPL Token account -------------------------------------------------------------------------

# [SPL state.rs] `array_refs![32, 32, 8, 36, 1, 12, 8, 36]`: mint @0, owner @32, amount @64,
# delegate COption<Pubkey> @72 (u32 tag + key), state @108, is_native COption<u64> @109,
# delegated_amount @121, close_authority COption<Pubkey> @129.
_TOKEN_ACCOUNT = struct.Struct("<32s32sQI32sBIQQI32s")
TOKEN_ACCOUNT_SIZE = 165
TOKEN_ACCOUNT_INITIALIZED = 1


def _option_key(tag: int, raw: bytes) -> Pubkey | None:
    if tag not in (0, 1):
        raise AccountDecodeError(f"bad COption tag {tag}")
    return _key(raw) if tag else None


@dataclass(frozen=True)
class TokenAccount:
    """An SPL Token account (165 bytes). `is_native` is the rent reserve of a wrapped-SOL
    account (None for any other mint); `state` 1 = initialized, 2 = frozen."""

    mint: Pubkey
    owner: Pubkey
    amount: int
    is_native: int | None = None
    delegate: Pubkey | None = None
    state: int = TOKEN_ACCOUNT_INITIALIZED
    delegated_amount: int = 0
    close_authority: Pubkey | None = None

    def encode(self) -> bytes:
        return _pack(
            "TokenAccount",
            _TOKEN_ACCOUNT,
            bytes(self.mint),
            bytes(self.owner),
            self.amount,
            0 if self.delegate is None else 1,
            bytes(self.delegate or _ZERO_KEY),
            self.state,
            0 if self.is_native is None else 1,
            self.is_native or 0,
            self.delegated_amount,
            0 if self.close_authority is None else 1,
            bytes(self.close_authority or _ZERO_KEY),
        )

    @classmethod
    def decode(cls, data: bytes) -> TokenAccount:
        _check_size("TokenAccount", data, TOKEN_ACCOUNT_SIZE)
        (
            mint,
            owner,
            amount,
            delegate_tag,
            delegate,
            state,
            native_tag,
            native,
            delegated,
            close_tag,
            close,
        ) = _TOKEN_ACCOUNT.unpack(data)
        if native_tag not in (0, 1):
            raise AccountDecodeError(f"bad COption tag {native_tag}")
        return cls(
            mint=_key(mint),
            owner=_key(owner),
            amount=amount,
            is_native=native if native_tag else None,
            delegate=_option_key(delegate_tag, delegate),
            state=state,
            delegated_amount=delegated,
            close_authority=_option_key(close_tag, close),
        )


# --- Raydium CP-Swap ----------------------------------------------------------------------------

# [RAY states/pool.rs] `#[repr(C, packed)]`, offsets including the discriminator: ten keys @8..328
# (amm_config, pool_creator, token_0_vault, token_1_vault, lp_mint, token_0_mint @168,
# token_1_mint @200, token_0_program, token_1_program, observation_key @296), auth_bump @328,
# status @329, lp_mint_decimals @330, mint_0/1_decimals @331/332, lp_supply @333, protocol fees
# @341/349, fund fees @357/365, open_time @373, recent_epoch @381, creator_fee_on @389,
# enable_creator_fee @390, padding1 [u8;6], creator fees @397/405, padding [u64;28] @413.
_POOL_STATE = struct.Struct("<8s" + "32s" * 10 + "5B" + "7Q" + "B?6xQQ224x")
POOL_STATE_SIZE = 637

# Status bits [RAY states/pool.rs PoolStatusBitIndex]: a set bit disables the operation.
POOL_STATUS_DEPOSIT_DISABLED = 1
POOL_STATUS_WITHDRAW_DISABLED = 2
POOL_STATUS_SWAP_DISABLED = 4


@dataclass(frozen=True)
class CpmmPoolState:
    """Raydium CP-Swap `PoolState` (637 bytes, zero-copy packed) [RAY states/pool.rs].

    Fees owed to the protocol, the fund and the creator sit in the vaults but outside the curve;
    `cpmm_pool` subtracts them. `status` bit 2 (value 4) disables swaps.
    """

    amm_config: Pubkey
    pool_creator: Pubkey
    token_0_vault: Pubkey
    token_1_vault: Pubkey
    lp_mint: Pubkey
    token_0_mint: Pubkey
    token_1_mint: Pubkey
    token_0_program: Pubkey
    token_1_program: Pubkey
    observation_key: Pubkey
    auth_bump: int
    status: int
    lp_mint_decimals: int
    mint_0_decimals: int
    mint_1_decimals: int
    lp_supply: int
    protocol_fees_token_0: int
    protocol_fees_token_1: int
    fund_fees_token_0: int
    fund_fees_token_1: int
    open_time: int
    recent_epoch: int = 0
    creator_fee_on: int = 0
    enable_creator_fee: bool = False
    creator_fees_token_0: int = 0
    creator_fees_token_1: int = 0

    @classmethod
    def create(
        cls,
        amm_config: Pubkey,
        token_0_mint: Pubkey,
        token_1_mint: Pubkey,
        mint_0_decimals: int,
        mint_1_decimals: int,
        *,
        pool_creator: Pubkey = _ZERO_KEY,
        lp_supply: int = 0,
        status: int = 0,
        open_time: int = 0,
    ) -> CpmmPoolState:
        """A fresh pool at the canonical PDA addresses (pool, vaults, LP mint, observation),
        both sides on the SPL Token program and no fees accrued."""
        pool = cpmm_pool_address(amm_config, token_0_mint, token_1_mint)
        return cls(
            amm_config=amm_config,
            pool_creator=pool_creator,
            token_0_vault=cpmm_vault_address(pool, token_0_mint),
            token_1_vault=cpmm_vault_address(pool, token_1_mint),
            lp_mint=cpmm_lp_mint_address(pool),
            token_0_mint=token_0_mint,
            token_1_mint=token_1_mint,
            token_0_program=TOKEN_PROGRAM,
            token_1_program=TOKEN_PROGRAM,
            observation_key=cpmm_observation_address(pool),
            auth_bump=cpmm_authority_bump(),
            status=status,
            # initialize.rs gives the LP mint 9 decimals.
            lp_mint_decimals=9,
            mint_0_decimals=mint_0_decimals,
            mint_1_decimals=mint_1_decimals,
            lp_supply=lp_supply,
            protocol_fees_token_0=0,
            protocol_fees_token_1=0,
            fund_fees_token_0=0,
            fund_fees_token_1=0,
            open_time=open_time,
        )

    @property
    def swap_enabled(self) -> bool:
        return not self.status & POOL_STATUS_SWAP_DISABLED

    def encode(self) -> bytes:
        return _pack(
            "CpmmPoolState",
            _POOL_STATE,
            POOL_STATE_DISCRIMINATOR,
            bytes(self.amm_config),
            bytes(self.pool_creator),
            bytes(self.token_0_vault),
            bytes(self.token_1_vault),
            bytes(self.lp_mint),
            bytes(self.token_0_mint),
            bytes(self.token_1_mint),
            bytes(self.token_0_program),
            bytes(self.token_1_program),
            bytes(self.observation_key),
            self.auth_bump,
            self.status,
            self.lp_mint_decimals,
            self.mint_0_decimals,
            self.mint_1_decimals,
            self.lp_supply,
            self.protocol_fees_token_0,
            self.protocol_fees_token_1,
            self.fund_fees_token_0,
            self.fund_fees_token_1,
            self.open_time,
            self.recent_epoch,
            self.creator_fee_on,
            self.enable_creator_fee,
            self.creator_fees_token_0,
            self.creator_fees_token_1,
        )

    @classmethod
    def decode(cls, data: bytes) -> CpmmPoolState:
        _check_size("CpmmPoolState", data, POOL_STATE_SIZE)
        _check_discriminator("CpmmPoolState", data, POOL_STATE_DISCRIMINATOR)
        values = _POOL_STATE.unpack(data)
        keys = [_key(raw) for raw in values[1:11]]
        return cls(*keys, *values[11:])  # type: ignore[arg-type]  # fields in layout order


# [RAY states/config.rs] Borsh `#[account]`: bump @8, disable_create_pool @9, index u16 @10,
# trade_fee_rate @12, protocol_fee_rate @20, fund_fee_rate @28, create_pool_fee @36,
# protocol_owner @44, fund_owner @76, creator_fee_rate @108, padding [u64;15] @116.
_AMM_CONFIG = struct.Struct("<8sB?HQQQQ32s32sQ120x")
AMM_CONFIG_SIZE = 236


@dataclass(frozen=True)
class AmmConfig:
    """Raydium CP-Swap `AmmConfig` (236 bytes) [RAY states/config.rs].

    Rates are over 1_000_000 [RAY curve/fees.rs]: `trade_fee_rate` of the input amount;
    `protocol_fee_rate` and `fund_fee_rate` are shares *of the trade fee*. `bump` defaults to
    the bump of `amm_config_address(index)`.
    """

    index: int
    trade_fee_rate: int
    protocol_fee_rate: int = 0
    fund_fee_rate: int = 0
    bump: int | None = None
    disable_create_pool: bool = False
    create_pool_fee: int = 0
    protocol_owner: Pubkey = _ZERO_KEY
    fund_owner: Pubkey = _ZERO_KEY
    creator_fee_rate: int = 0

    def __post_init__(self) -> None:
        if self.bump is None:
            object.__setattr__(self, "bump", _amm_config_pda(self.index)[1])

    def encode(self) -> bytes:
        return _pack(
            "AmmConfig",
            _AMM_CONFIG,
            AMM_CONFIG_DISCRIMINATOR,
            self.bump,
            self.disable_create_pool,
            self.index,
            self.trade_fee_rate,
            self.protocol_fee_rate,
            self.fund_fee_rate,
            self.create_pool_fee,
            bytes(self.protocol_owner),
            bytes(self.fund_owner),
            self.creator_fee_rate,
        )

    @classmethod
    def decode(cls, data: bytes) -> AmmConfig:
        _check_size("AmmConfig", data, AMM_CONFIG_SIZE)
        _check_discriminator("AmmConfig", data, AMM_CONFIG_DISCRIMINATOR)
        (
            _,
            bump,
            disable,
            index,
            trade,
            protocol,
            fund,
            create_fee,
            protocol_owner,
            fund_owner,
            creator,
        ) = _AMM_CONFIG.unpack(data)
        return cls(
            index=index,
            trade_fee_rate=trade,
            protocol_fee_rate=protocol,
            fund_fee_rate=fund,
            bump=bump,
            disable_create_pool=disable,
            create_pool_fee=create_fee,
            protocol_owner=_key(protocol_owner),
            fund_owner=_key(fund_owner),
            creator_fee_rate=creator,
        )


# Raydium's ObservationState is not modelled; the localnet serves the discriminator alone.
OBSERVATION_STATE_PLACEHOLDER = OBSERVATION_STATE_DISCRIMINATOR


# --- Meteora DLMM -------------------------------------------------------------------------------

# [MET IDL v0.12.0] bytemuck repr(C), no alignment gaps (research §8), offsets with discriminator:
#   @8  StaticParameters (32): base_factor u16, filter_period u16, decay_period u16,
#       reduction_factor u16, variable_fee_control u32 @16, max_volatility_accumulator u32 @20,
#       min_bin_id i32 @24, max_bin_id i32 @28, protocol_share u16 @32, base_fee_power_factor u8
#       @34, function_type u8, collect_fee_mode u8, padding [u8;3]
#   @40 VariableParameters (32): volatility_accumulator u32, volatility_reference u32 @44,
#       index_reference i32 @48, padding [u8;4], last_update_timestamp i64 @56, padding [u8;8]
#   @72 bump_seed, bin_step_seed [u8;2] @73, pair_type @75, active_id i32 @76, bin_step u16 @80,
#       status @82, require_base_factor_seed @83, base_factor_seed [u8;2] @84,
#       activation_type @86, creator_pool_on_off_control @87
#   @88 token_x_mint, @120 token_y_mint, @152 reserve_x, @184 reserve_y,
#   @216 protocol_fee {amount_x, amount_y}, @232 padding [u8;32], @264 reward_infos (2 x 144),
#   @552 oracle, @584 bin_array_bitmap [u64;16], @712 last_updated_at i64, @720 padding [u8;32],
#   @752 pre_activation_swap_address, @784 base_key, @816 activation_point u64,
#   @824 pre_activation_duration u64, @832 padding (16), @848 creator,
#   @880 token_mint_x/y_program_flag u8, @882 version u8, @883 reserved [u8;21]  -> 904
_LB_PAIR = struct.Struct(
    "<8sHHHHIIiiHBBB3xIIi4xq8xB2sBiHBB2sBB32s32s32s32sQQ32x288x32s16Qq32x32s32sQQ16x32sBBB21x"
)
LB_PAIR_SIZE = 904
BIN_ARRAY_BITMAP_WORDS = 16
# The pair's own bitmap covers bin-array indexes [-512, 511] (BIN_ARRAY_BITMAP_SIZE) [MET
# commons/src/constants.rs]; beyond that the program needs the bitmap extension account.
BIN_ARRAY_BITMAP_SIZE = 512
_EMPTY_BITMAP = (0,) * BIN_ARRAY_BITMAP_WORDS
LB_PAIR_STATUS_ENABLED = 0


@dataclass(frozen=True)
class LbPair:
    """Meteora DLMM `LbPair` (904 bytes) [MET IDL v0.12.0].

    Field names follow the IDL with the `parameters.` / `v_parameters.` prefixes dropped. Fee
    rates are at 1e9 precision once combined (see `DlmmParameters`); `protocol_share` is in
    basis points; `bin_array_bitmap` is 16 little-endian u64 words whose bit i (of the 1024-bit
    integer) marks bin-array index i - 512 as initialized.
    """

    base_factor: int
    filter_period: int
    decay_period: int
    reduction_factor: int
    variable_fee_control: int
    max_volatility_accumulator: int
    min_bin_id: int
    max_bin_id: int
    protocol_share: int
    base_fee_power_factor: int
    volatility_accumulator: int
    volatility_reference: int
    index_reference: int
    last_update_timestamp: int
    active_id: int
    bin_step: int
    status: int
    token_x_mint: Pubkey
    token_y_mint: Pubkey
    reserve_x: Pubkey
    reserve_y: Pubkey
    oracle: Pubkey
    bin_array_bitmap: tuple[int, ...] = _EMPTY_BITMAP
    bump_seed: int = 0
    pair_type: int = 0
    activation_type: int = 0
    protocol_fee_x: int = 0
    protocol_fee_y: int = 0
    last_updated_at: int = 0
    base_key: Pubkey = _ZERO_KEY
    creator: Pubkey = _ZERO_KEY
    activation_point: int = 0
    token_mint_x_program_flag: int = 0
    token_mint_y_program_flag: int = 0
    version: int = 0

    def __post_init__(self) -> None:
        bitmap = tuple(self.bin_array_bitmap)
        if len(bitmap) != BIN_ARRAY_BITMAP_WORDS:
            raise ValueError(f"bin_array_bitmap has {BIN_ARRAY_BITMAP_WORDS} u64 words")
        object.__setattr__(self, "bin_array_bitmap", bitmap)

    @property
    def parameters(self) -> DlmmParameters:
        """The pair's static parameters as the pure math wants them."""
        return DlmmParameters(
            bin_step=self.bin_step,
            base_factor=self.base_factor,
            variable_fee_control=self.variable_fee_control,
            filter_period=self.filter_period,
            decay_period=self.decay_period,
            reduction_factor=self.reduction_factor,
            max_volatility_accumulator=self.max_volatility_accumulator,
            protocol_share=self.protocol_share,
            base_fee_power_factor=self.base_fee_power_factor,
        )

    @property
    def volatility(self) -> VolatilityState:
        return VolatilityState(
            volatility_accumulator=self.volatility_accumulator,
            volatility_reference=self.volatility_reference,
            index_reference=self.index_reference,
            last_update_timestamp=self.last_update_timestamp,
        )

    def encode(self) -> bytes:
        return _pack(
            "LbPair",
            _LB_PAIR,
            LB_PAIR_DISCRIMINATOR,
            self.base_factor,
            self.filter_period,
            self.decay_period,
            self.reduction_factor,
            self.variable_fee_control,
            self.max_volatility_accumulator,
            self.min_bin_id,
            self.max_bin_id,
            self.protocol_share,
            self.base_fee_power_factor,
            0,  # function_type
            0,  # collect_fee_mode
            self.volatility_accumulator,
            self.volatility_reference,
            self.index_reference,
            self.last_update_timestamp,
            self.bump_seed,
            # The pair PDA's bin-step seed is the bin step, little-endian [MET commons/src/pda.rs].
            self.bin_step.to_bytes(2, "little"),
            self.pair_type,
            self.active_id,
            self.bin_step,
            self.status,
            0,  # require_base_factor_seed
            b"\0\0",  # base_factor_seed
            self.activation_type,
            0,  # creator_pool_on_off_control
            bytes(self.token_x_mint),
            bytes(self.token_y_mint),
            bytes(self.reserve_x),
            bytes(self.reserve_y),
            self.protocol_fee_x,
            self.protocol_fee_y,
            bytes(self.oracle),
            *self.bin_array_bitmap,
            self.last_updated_at,
            bytes(_ZERO_KEY),  # pre_activation_swap_address
            bytes(self.base_key),
            self.activation_point,
            0,  # pre_activation_duration
            bytes(self.creator),
            self.token_mint_x_program_flag,
            self.token_mint_y_program_flag,
            self.version,
        )

    @classmethod
    def decode(cls, data: bytes) -> LbPair:
        _check_size("LbPair", data, LB_PAIR_SIZE)
        _check_discriminator("LbPair", data, LB_PAIR_DISCRIMINATOR)
        v = _LB_PAIR.unpack(data)
        # Not modelled: v[11], v[12] function_type, collect_fee_mode; v[18] bin_step_seed;
        # v[23], v[24] base-factor seed; v[26] creator_pool_on_off_control;
        # v[51] pre_activation_swap_address; v[54] pre_activation_duration.
        return cls(
            base_factor=v[1],
            filter_period=v[2],
            decay_period=v[3],
            reduction_factor=v[4],
            variable_fee_control=v[5],
            max_volatility_accumulator=v[6],
            min_bin_id=v[7],
            max_bin_id=v[8],
            protocol_share=v[9],
            base_fee_power_factor=v[10],
            volatility_accumulator=v[13],
            volatility_reference=v[14],
            index_reference=v[15],
            last_update_timestamp=v[16],
            bump_seed=v[17],
            pair_type=v[19],
            active_id=v[20],
            bin_step=v[21],
            status=v[22],
            activation_type=v[25],
            token_x_mint=_key(v[27]),
            token_y_mint=_key(v[28]),
            reserve_x=_key(v[29]),
            reserve_y=_key(v[30]),
            protocol_fee_x=v[31],
            protocol_fee_y=v[32],
            oracle=_key(v[33]),
            bin_array_bitmap=v[34:50],
            last_updated_at=v[50],
            base_key=_key(v[52]),
            activation_point=v[53],
            creator=_key(v[55]),
            token_mint_x_program_flag=v[56],
            token_mint_y_program_flag=v[57],
            version=v[58],
        )


# [MET IDL] BinArray: index i64 @8, version u8 @16, padding [u8;7], lb_pair @24, bins[70] @56.
_BIN_ARRAY_HEADER = struct.Struct("<8sqB7x32s")
# One Bin, 144 bytes: amount_x u64 @+0, amount_y u64 @+8, price u128 (Q64.64) @+16, then
# liquidity_supply, fee and order accumulators (not modelled, zero) up to +144.
_BIN = struct.Struct("<QQ16s112x")
BIN_SIZE = 144
MAX_BIN_PER_ARRAY = 70  # [MET commons/src/constants.rs]
BIN_ARRAY_SIZE = _BIN_ARRAY_HEADER.size + MAX_BIN_PER_ARRAY * BIN_SIZE  # 10_136
_EMPTY_BIN_BYTES = bytes(BIN_SIZE)


@dataclass(frozen=True)
class BinArray:
    """Meteora DLMM `BinArray` (10 136 bytes) [MET IDL; commons/src/extensions/bin_array.rs].

    Holds the 70 consecutive bins `index*70 .. index*70+69`; `bins[i]` is
    `(amount_x, amount_y, price_q64)` of bin id `index*70 + i`, and sits at byte 56 + 144*i.
    """

    index: int
    lb_pair: Pubkey
    bins: tuple[tuple[int, int, int], ...]
    version: int = 0

    def __post_init__(self) -> None:
        bins = tuple(tuple(b) for b in self.bins)
        if len(bins) != MAX_BIN_PER_ARRAY or any(len(b) != 3 for b in bins):
            raise ValueError(f"a BinArray holds {MAX_BIN_PER_ARRAY} (amount_x, amount_y, price)")
        object.__setattr__(self, "bins", bins)

    @property
    def first_bin_id(self) -> int:
        return self.index * MAX_BIN_PER_ARRAY

    def non_empty_bins(self) -> Iterable[tuple[int, Bin]]:
        """(bin id, Bin) for every bin holding either token."""
        first = self.first_bin_id
        for offset, (amount_x, amount_y, _) in enumerate(self.bins):
            if amount_x or amount_y:
                yield first + offset, Bin(amount_x, amount_y)

    def encode(self) -> bytes:
        header = _pack(
            "BinArray",
            _BIN_ARRAY_HEADER,
            BIN_ARRAY_DISCRIMINATOR,
            self.index,
            self.version,
            bytes(self.lb_pair),
        )
        parts = [header]
        for amount_x, amount_y, price in self.bins:
            if amount_x == amount_y == price == 0:
                parts.append(_EMPTY_BIN_BYTES)  # most bins of most arrays
                continue
            if not 0 <= price < 1 << 128:
                raise ValueError(f"cannot encode BinArray: price {price} is not a u128")
            parts.append(_pack("BinArray", _BIN, amount_x, amount_y, price.to_bytes(16, "little")))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> BinArray:
        _check_size("BinArray", data, BIN_ARRAY_SIZE)
        _check_discriminator("BinArray", data, BIN_ARRAY_DISCRIMINATOR)
        _, index, version, lb_pair = _BIN_ARRAY_HEADER.unpack_from(data)
        view = memoryview(data)[_BIN_ARRAY_HEADER.size :]
        bins = tuple(
            (amount_x, amount_y, int.from_bytes(price, "little"))
            for amount_x, amount_y, price in _BIN.iter_unpack(view)
        )
        return cls(index=index, lb_pair=_key(lb_pair), bins=bins, version=version)


# --- bin arrays and the bitmap ------------------------------------------------------------------


def bin_array_index(bin_id: int) -> int:
    """The array holding a bin: floor(bin_id / 70), so -1 -> -1 and -70 -> -1 [MET bin_array.rs]."""
    return bin_id // MAX_BIN_PER_ARRAY


def bitmap_with(indexes: Iterable[int]) -> tuple[int, ...]:
    """The LbPair bitmap (16 u64 words) with the given bin-array indexes set.

    Raises `ValueError` for an index outside [-512, 511]: those need the extension account,
    which we do not model.
    """
    value = 0
    for index in indexes:
        if not -BIN_ARRAY_BITMAP_SIZE <= index < BIN_ARRAY_BITMAP_SIZE:
            raise ValueError(f"bin-array index {index} is outside the pair's bitmap")
        value |= 1 << (index + BIN_ARRAY_BITMAP_SIZE)
    return tuple((value >> (64 * word)) & _U64_MASK for word in range(BIN_ARRAY_BITMAP_WORDS))


def bitmap_indexes(bitmap: Sequence[int]) -> list[int]:
    """The bin-array indexes set in an LbPair bitmap, ascending."""
    value = 0
    for word, bits in enumerate(bitmap):
        value |= bits << (64 * word)
    indexes = []
    while value:
        low = value & -value
        indexes.append(low.bit_length() - 1 - BIN_ARRAY_BITMAP_SIZE)
        value ^= low
    return indexes


def swap_bin_array_indexes(pair: LbPair, swap_for_y: bool, limit: int = 3) -> list[int]:
    """Bin arrays to pass to a swap, in walk order [MET commons/src/quote.rs
    `get_bin_array_pubkeys_for_swap`]: from the array holding the active bin, towards lower
    prices for X -> Y and higher for Y -> X, skipping arrays the bitmap says do not exist."""
    start = bin_array_index(pair.active_id)
    existing = bitmap_indexes(pair.bin_array_bitmap)
    if swap_for_y:
        ordered = [i for i in reversed(existing) if i <= start]
    else:
        ordered = [i for i in existing if i >= start]
    return ordered[:limit]


# --- PDAs ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cpmm_authority_pda() -> tuple[Pubkey, int]:
    return Pubkey.find_program_address([b"vault_and_lp_mint_auth_seed"], RAYDIUM_CPMM_PROGRAM)


def cpmm_authority() -> Pubkey:
    """Vault and LP-mint authority: PDA ["vault_and_lp_mint_auth_seed"] [RAY]; mainnet
    GpMZbSM2GgvTKHJirzeGfMFoaZ8UR2X7F4v8vHTvxFbL."""
    return _cpmm_authority_pda()[0]


def cpmm_authority_bump() -> int:
    """The authority PDA's bump, stored as `PoolState.auth_bump`."""
    return _cpmm_authority_pda()[1]


@lru_cache(maxsize=64)
def _amm_config_pda(index: int) -> tuple[Pubkey, int]:
    # The index is big-endian in this seed, unlike every other integer seed [RAY create_config.rs].
    return Pubkey.find_program_address(
        [b"amm_config", index.to_bytes(2, "big")], RAYDIUM_CPMM_PROGRAM
    )


def amm_config_address(index: int) -> Pubkey:
    """PDA ["amm_config", index u16 BE] [RAY]; mainnet index 0 is
    D4FPEruKEHrG5TenZ2mpDGEfu1iUvTiqBxvpU8HLBvC2."""
    return _amm_config_pda(index)[0]


@lru_cache(maxsize=4096)
def cpmm_pool_address(amm_config: Pubkey, mint_0: Pubkey, mint_1: Pubkey) -> Pubkey:
    """PDA ["pool", amm_config, token_0_mint, token_1_mint] [RAY initialize.rs]."""
    seeds = [b"pool", bytes(amm_config), bytes(mint_0), bytes(mint_1)]
    return Pubkey.find_program_address(seeds, RAYDIUM_CPMM_PROGRAM)[0]


@lru_cache(maxsize=4096)
def cpmm_vault_address(pool: Pubkey, mint: Pubkey) -> Pubkey:
    """PDA ["pool_vault", pool, mint] [RAY initialize.rs]."""
    seeds = [b"pool_vault", bytes(pool), bytes(mint)]
    return Pubkey.find_program_address(seeds, RAYDIUM_CPMM_PROGRAM)[0]


@lru_cache(maxsize=4096)
def cpmm_lp_mint_address(pool: Pubkey) -> Pubkey:
    """PDA ["pool_lp_mint", pool] [RAY initialize.rs]."""
    return Pubkey.find_program_address([b"pool_lp_mint", bytes(pool)], RAYDIUM_CPMM_PROGRAM)[0]


@lru_cache(maxsize=4096)
def cpmm_observation_address(pool: Pubkey) -> Pubkey:
    """PDA ["observation", pool] [RAY states/oracle.rs]."""
    return Pubkey.find_program_address([b"observation", bytes(pool)], RAYDIUM_CPMM_PROGRAM)[0]


@lru_cache(maxsize=4096)
def _lb_pair_pda(mint_x: Pubkey, mint_y: Pubkey, bin_step: int) -> tuple[Pubkey, int]:
    # The mints are sorted so that either order names the same pair [MET commons/src/pda.rs].
    low, high = sorted((bytes(mint_x), bytes(mint_y)))
    return Pubkey.find_program_address(
        [low, high, bin_step.to_bytes(2, "little")], METEORA_DLMM_PROGRAM
    )


def dlmm_lb_pair_address(mint_x: Pubkey, mint_y: Pubkey, bin_step: int) -> Pubkey:
    """PDA [min(mint_x, mint_y), max(...), bin_step u16 LE] under the DLMM program."""
    return _lb_pair_pda(mint_x, mint_y, bin_step)[0]


@lru_cache(maxsize=4096)
def dlmm_reserve_address(lb_pair: Pubkey, mint: Pubkey) -> Pubkey:
    """PDA [lb_pair, mint] [MET commons/src/pda.rs]: the pair's token account for one side."""
    return Pubkey.find_program_address([bytes(lb_pair), bytes(mint)], METEORA_DLMM_PROGRAM)[0]


@lru_cache(maxsize=4096)
def dlmm_oracle_address(lb_pair: Pubkey) -> Pubkey:
    """PDA ["oracle", lb_pair] [MET commons/src/pda.rs]."""
    return Pubkey.find_program_address([b"oracle", bytes(lb_pair)], METEORA_DLMM_PROGRAM)[0]


@lru_cache(maxsize=4096)
def dlmm_bitmap_extension_address(lb_pair: Pubkey) -> Pubkey:
    """PDA ["bitmap", lb_pair]; needed only for bin arrays outside [-512, 511]."""
    return Pubkey.find_program_address([b"bitmap", bytes(lb_pair)], METEORA_DLMM_PROGRAM)[0]


@lru_cache(maxsize=16_384)
def dlmm_bin_array_address(lb_pair: Pubkey, index: int) -> Pubkey:
    """PDA ["bin_array", lb_pair, index i64 LE] [MET commons/src/pda.rs]."""
    seeds = [b"bin_array", bytes(lb_pair), index.to_bytes(8, "little", signed=True)]
    return Pubkey.find_program_address(seeds, METEORA_DLMM_PROGRAM)[0]


# --- accounts <-> pure math ---------------------------------------------------------------------


def cpmm_pool(
    state: CpmmPoolState, config: AmmConfig, vault_0: TokenAccount, vault_1: TokenAccount
) -> ConstantProductPool:
    """The constant-product pool the program's curve sees (x = token_0, y = token_1).

    Reserves are the vault balances minus the protocol, fund and creator fees accrued on that
    side (`vault_amount_without_fee` [RAY curve/calculator.rs]); the trade fee is
    `trade_fee_rate / 1e6`. Raises `ValueError` if a vault holds the wrong mint or less than
    the fees it owes.
    """
    if vault_0.mint != state.token_0_mint or vault_1.mint != state.token_1_mint:
        raise ValueError("the vaults do not hold the pool's mints in token_0, token_1 order")
    owed_0 = state.protocol_fees_token_0 + state.fund_fees_token_0 + state.creator_fees_token_0
    owed_1 = state.protocol_fees_token_1 + state.fund_fees_token_1 + state.creator_fees_token_1
    if vault_0.amount < owed_0 or vault_1.amount < owed_1:
        raise ValueError("a vault holds less than the fees it owes")
    return ConstantProductPool.raydium_cpmm(
        vault_0.amount - owed_0,
        vault_1.amount - owed_1,
        trade_fee_rate=config.trade_fee_rate,
        protocol_fee_rate=config.protocol_fee_rate,
        fund_fee_rate=config.fund_fee_rate,
    )


def dlmm_pool(pair: LbPair, arrays: Iterable[BinArray]) -> DlmmPool:
    """The DLMM pool the program sees: the pair's parameters, active bin and volatility state,
    and every non-empty bin of the given arrays. Raises `ValueError` on a duplicate array."""
    bins: dict[int, Bin] = {}
    seen: set[int] = set()
    for array in arrays:
        if array.index in seen:
            raise ValueError(f"bin array {array.index} given twice")
        seen.add(array.index)
        bins.update(array.non_empty_bins())
    return DlmmPool(pair.parameters, pair.active_id, bins, pair.volatility)


@dataclass(frozen=True)
class CpmmAccounts:
    """Everything a Raydium CPMM pool serves, built from a pure pool (the localnet's direction)."""

    address: Pubkey
    state: CpmmPoolState
    config_address: Pubkey
    config: AmmConfig
    vault_0: TokenAccount
    vault_1: TokenAccount

    def accounts(self) -> dict[Pubkey, tuple[Pubkey, bytes]]:
        """address -> (owner program, data) for the pool, its config, vaults and observation."""
        return {
            self.address: (RAYDIUM_CPMM_PROGRAM, self.state.encode()),
            self.config_address: (RAYDIUM_CPMM_PROGRAM, self.config.encode()),
            self.state.token_0_vault: (TOKEN_PROGRAM, self.vault_0.encode()),
            self.state.token_1_vault: (TOKEN_PROGRAM, self.vault_1.encode()),
            self.state.observation_key: (RAYDIUM_CPMM_PROGRAM, OBSERVATION_STATE_PLACEHOLDER),
        }


def cpmm_pool_accounts(
    pool: ConstantProductPool,
    amm_config_index: int,
    token_0_mint: Pubkey,
    token_1_mint: Pubkey,
    mint_0_decimals: int,
    mint_1_decimals: int,
    *,
    lp_supply: int = 0,
    status: int = 0,
    open_time: int = 0,
) -> CpmmAccounts:
    """Accounts for a pure CPMM pool at the canonical PDAs: x = token_0, y = token_1, vault
    amounts = reserves (no fees owed), config at `amm_config_address(amm_config_index)` with
    the pool's fee. `cpmm_pool` of the result equals `pool`."""
    if pool.fee_denominator != CPMM_FEE_RATE_DENOMINATOR:
        raise ValueError("a CPMM pool's fee is over 1_000_000")
    config_address = amm_config_address(amm_config_index)
    state = CpmmPoolState.create(
        config_address,
        token_0_mint,
        token_1_mint,
        mint_0_decimals,
        mint_1_decimals,
        lp_supply=lp_supply,
        status=status,
        open_time=open_time,
    )
    config = AmmConfig(
        amm_config_index, pool.fee_numerator, pool.protocol_fee_rate, pool.fund_fee_rate
    )
    authority = cpmm_authority()
    return CpmmAccounts(
        address=cpmm_pool_address(config_address, token_0_mint, token_1_mint),
        state=state,
        config_address=config_address,
        config=config,
        vault_0=TokenAccount(token_0_mint, authority, pool.reserve_x),
        vault_1=TokenAccount(token_1_mint, authority, pool.reserve_y),
    )


def lb_pair_and_arrays(
    address: Pubkey | None,
    pool: DlmmPool,
    token_x_mint: Pubkey,
    token_y_mint: Pubkey,
    *,
    status: int = LB_PAIR_STATUS_ENABLED,
    protocol_fee_x: int = 0,
    protocol_fee_y: int = 0,
) -> tuple[LbPair, list[BinArray]]:
    """The LbPair and the BinArrays (ascending index, only those holding a non-empty bin) of a
    pure DLMM pool. `address` is the pair's address (None: `dlmm_lb_pair_address`); reserves and
    oracle are its PDAs. `dlmm_pool(*lb_pair_and_arrays(...))` equals `pool` minus empty bins.
    Every bin of a served array carries its Q64.64 price, as the program stores it."""
    params = pool.params
    pda, bump = _lb_pair_pda(token_x_mint, token_y_mint, params.bin_step)
    if address is None:
        address = pda
    by_array: dict[int, list[tuple[int, int, int]]] = {}
    for bin_id, current in pool.bins.items():
        if not (current.amount_x or current.amount_y):
            continue
        index = bin_array_index(bin_id)
        if index not in by_array:
            by_array[index] = _empty_bins(index, params.bin_step)
        price = price_q64_from_id(bin_id, params.bin_step)
        by_array[index][bin_id - index * MAX_BIN_PER_ARRAY] = (
            current.amount_x,
            current.amount_y,
            price,
        )
    arrays = [BinArray(index, address, tuple(by_array[index])) for index in sorted(by_array)]
    volatility = pool.volatility
    pair = LbPair(
        base_factor=params.base_factor,
        filter_period=params.filter_period,
        decay_period=params.decay_period,
        reduction_factor=params.reduction_factor,
        variable_fee_control=params.variable_fee_control,
        max_volatility_accumulator=params.max_volatility_accumulator,
        min_bin_id=MIN_BIN_ID,
        max_bin_id=MAX_BIN_ID,
        protocol_share=params.protocol_share,
        base_fee_power_factor=params.base_fee_power_factor,
        volatility_accumulator=volatility.volatility_accumulator,
        volatility_reference=volatility.volatility_reference,
        index_reference=volatility.index_reference,
        last_update_timestamp=volatility.last_update_timestamp,
        active_id=pool.active_id,
        bin_step=params.bin_step,
        status=status,
        token_x_mint=token_x_mint,
        token_y_mint=token_y_mint,
        reserve_x=dlmm_reserve_address(address, token_x_mint),
        reserve_y=dlmm_reserve_address(address, token_y_mint),
        oracle=dlmm_oracle_address(address),
        bin_array_bitmap=bitmap_with(by_array),
        bump_seed=bump if address == pda else 0,
        protocol_fee_x=protocol_fee_x,
        protocol_fee_y=protocol_fee_y,
    )
    return pair, arrays


def _empty_bins(index: int, bin_step: int) -> list[tuple[int, int, int]]:
    first = index * MAX_BIN_PER_ARRAY
    return [
        (0, 0, price_q64_from_id(bin_id, bin_step) if MIN_BIN_ID <= bin_id <= MAX_BIN_ID else 0)
        for bin_id in range(first, first + MAX_BIN_PER_ARRAY)
    ]


@dataclass(frozen=True)
class DlmmAccounts:
    """Everything a Meteora DLMM pair serves, built from a pure pool (the localnet's direction).

    The reserves are token accounts owned by the pair, holding the sum of the bins plus the
    protocol fees accrued on that side."""

    address: Pubkey
    pair: LbPair
    arrays: tuple[BinArray, ...]
    reserve_x: TokenAccount
    reserve_y: TokenAccount
    _array_addresses: tuple[Pubkey, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        addresses = tuple(dlmm_bin_array_address(self.address, a.index) for a in self.arrays)
        object.__setattr__(self, "_array_addresses", addresses)

    def accounts(self) -> dict[Pubkey, tuple[Pubkey, bytes]]:
        """address -> (owner program, data) for the pair, its reserves and bin arrays."""
        served = {
            self.address: (METEORA_DLMM_PROGRAM, self.pair.encode()),
            self.pair.reserve_x: (TOKEN_PROGRAM, self.reserve_x.encode()),
            self.pair.reserve_y: (TOKEN_PROGRAM, self.reserve_y.encode()),
        }
        for address, array in zip(self._array_addresses, self.arrays, strict=True):
            served[address] = (METEORA_DLMM_PROGRAM, array.encode())
        return served


def dlmm_pool_accounts(
    pool: DlmmPool,
    token_x_mint: Pubkey,
    token_y_mint: Pubkey,
    *,
    address: Pubkey | None = None,
    status: int = LB_PAIR_STATUS_ENABLED,
    protocol_fee_x: int = 0,
    protocol_fee_y: int = 0,
) -> DlmmAccounts:
    """`lb_pair_and_arrays` plus the two reserve token accounts, bundled."""
    if address is None:
        address = dlmm_lb_pair_address(token_x_mint, token_y_mint, pool.params.bin_step)
    pair, arrays = lb_pair_and_arrays(
        address,
        pool,
        token_x_mint,
        token_y_mint,
        status=status,
        protocol_fee_x=protocol_fee_x,
        protocol_fee_y=protocol_fee_y,
    )
    total_x = sum(b.amount_x for b in pool.bins.values()) + protocol_fee_x
    total_y = sum(b.amount_y for b in pool.bins.values()) + protocol_fee_y
    return DlmmAccounts(
        address=address,
        pair=pair,
        arrays=tuple(arrays),
        reserve_x=TokenAccount(token_x_mint, address, total_x),
        reserve_y=TokenAccount(token_y_mint, address, total_y),
    )
