"""Raydium CP-Swap's account layouts: `PoolState` (637 bytes) and `AmmConfig` (236 bytes)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.pubkey import Pubkey

from order_engine.chain.layouts.codec import (
    ZERO_KEY,
    check_discriminator,
    check_size,
    pack,
    to_pubkey,
)
from order_engine.chain.layouts.pdas import (
    amm_config_bump,
    cpmm_authority_bump,
    cpmm_lp_mint_address,
    cpmm_observation_address,
    cpmm_pool_address,
    cpmm_vault_address,
)
from order_engine.chain.programs import (
    AMM_CONFIG_DISCRIMINATOR,
    OBSERVATION_STATE_DISCRIMINATOR,
    POOL_STATE_DISCRIMINATOR,
    TOKEN_PROGRAM,
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
        pool_creator: Pubkey = ZERO_KEY,
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
        return pack(
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
        check_size("CpmmPoolState", data, POOL_STATE_SIZE)
        check_discriminator("CpmmPoolState", data, POOL_STATE_DISCRIMINATOR)
        values = _POOL_STATE.unpack(data)
        keys = [to_pubkey(raw) for raw in values[1:11]]
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
    protocol_owner: Pubkey = ZERO_KEY
    fund_owner: Pubkey = ZERO_KEY
    creator_fee_rate: int = 0

    def __post_init__(self) -> None:
        if self.bump is None:
            object.__setattr__(self, "bump", amm_config_bump(self.index))

    def encode(self) -> bytes:
        return pack(
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
        check_size("AmmConfig", data, AMM_CONFIG_SIZE)
        check_discriminator("AmmConfig", data, AMM_CONFIG_DISCRIMINATOR)
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
            protocol_owner=to_pubkey(protocol_owner),
            fund_owner=to_pubkey(fund_owner),
            creator_fee_rate=creator,
        )


# Raydium's ObservationState is not modelled; the localnet serves the discriminator alone.
OBSERVATION_STATE_PLACEHOLDER = OBSERVATION_STATE_DISCRIMINATOR
