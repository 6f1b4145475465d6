"""The accounts the localnet serves for its pools, built from its pure pool math objects.

The reverse of the engine's `order_engine.chain.pools.cpmm_pool` / `dlmm_pool`: a pool of
`order_engine.venues.math` becomes the program accounts a real cluster would hold for it, at the
canonical PDAs, encoded with the chain's own layouts, so the engine decodes exactly what it
would read from mainnet. Only the localnet serves these; the engine never builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solders.pubkey import Pubkey

from order_engine.chain.layouts.meteora import (
    LB_PAIR_STATUS_ENABLED,
    MAX_BIN_PER_ARRAY,
    BinArray,
    LbPair,
    bin_array_index,
    bitmap_with,
)
from order_engine.chain.layouts.pdas import (
    amm_config_address,
    cpmm_authority,
    cpmm_pool_address,
    dlmm_bin_array_address,
    dlmm_lb_pair_address,
    dlmm_lb_pair_bump,
    dlmm_oracle_address,
    dlmm_reserve_address,
)
from order_engine.chain.layouts.raydium import (
    OBSERVATION_STATE_PLACEHOLDER,
    AmmConfig,
    CpmmPoolState,
)
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import METEORA_DLMM_PROGRAM, RAYDIUM_CPMM_PROGRAM, TOKEN_PROGRAM
from order_engine.venues.math.cpmm import CPMM_FEE_RATE_DENOMINATOR, ConstantProductPool
from order_engine.venues.math.dlmm import MAX_BIN_ID, MIN_BIN_ID, DlmmPool, price_q64_from_id


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
    pda = dlmm_lb_pair_address(token_x_mint, token_y_mint, params.bin_step)
    if address is None:
        address = pda
    by_array = _bins_by_array(pool)
    arrays = [BinArray(index, address, tuple(by_array[index])) for index in sorted(by_array)]
    bump = dlmm_lb_pair_bump(token_x_mint, token_y_mint, params.bin_step)
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


def _bins_by_array(pool: DlmmPool) -> dict[int, list[tuple[int, int, int]]]:
    """(amount_x, amount_y, price Q64.64) of every bin of each array holding a non-empty bin."""
    bin_step = pool.params.bin_step
    by_array: dict[int, list[tuple[int, int, int]]] = {}
    for bin_id, current in pool.bins.items():
        if not (current.amount_x or current.amount_y):
            continue
        index = bin_array_index(bin_id)
        if index not in by_array:
            by_array[index] = _empty_bins(index, bin_step)
        price = price_q64_from_id(bin_id, bin_step)
        by_array[index][bin_id - index * MAX_BIN_PER_ARRAY] = (
            current.amount_x,
            current.amount_y,
            price,
        )
    return by_array


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
