"""Stand-in swap legs: what a venue's leg adds to a swap transaction, before its pool is read.

Intake refuses an order whose transaction could never fit in a packet (services/market.py);
it sizes that transaction from the builder's own instruction list (`tx.swap_instructions`)
with these legs in place of the real ones. A leg's size depends on how many accounts its
instruction names and how many of those are new to the transaction, never on their values:
the pool's own accounts (pool, vaults or reserves, config, oracle or observation, bin arrays)
are distinct keys here as on chain, while the mints, the token program, the payer's token
accounts and the programs are the real ones, shared with the rest of the transaction as in a
real build. So a stand-in leg costs exactly what a leg of its venue costs, and a DLMM one
walks the most bin arrays the builder ever passes (`MAX_BIN_ARRAYS_PER_SWAP`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from solders.pubkey import Pubkey

from order_engine.chain.layouts.codec import ZERO_KEY
from order_engine.chain.layouts.meteora import LbPair
from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.programs import TOKEN_PROGRAM
from order_engine.chain.tx import MAX_BIN_ARRAYS_PER_SWAP, METEORA, RAYDIUM, SwapLeg


def placeholder_key(label: str) -> Pubkey:
    """A key no real account has: sha256 of a label (off the curve or not, nobody holds it)."""
    return Pubkey(hashlib.sha256(f"order-engine placeholder {label}".encode()).digest())


def placeholder_leg(venue: str, input_mint: Pubkey, output_mint: Pubkey, slot: int) -> SwapLeg:
    """A leg of `venue` selling `input_mint` for `output_mint` on a stand-in pool, its own
    accounts distinct from every other slot's; amounts 0 (they are fixed-size in the data)."""
    if venue == RAYDIUM:
        return SwapLeg.raydium(
            placeholder_key(f"{slot} pool"),
            _cpmm_state(input_mint, output_mint, slot),
            input_mint,
            0,
            0,
        )
    if venue == METEORA:
        return SwapLeg.meteora(
            placeholder_key(f"{slot} pool"),
            _lb_pair(input_mint, output_mint, slot),
            input_mint,
            0,
            0,
            bin_array_indexes=range(MAX_BIN_ARRAYS_PER_SWAP),
        )
    raise ValueError(f"unknown venue {venue!r}")


def _cpmm_state(mint_0: Pubkey, mint_1: Pubkey, slot: int) -> CpmmPoolState:
    def key(name: str) -> Pubkey:
        return placeholder_key(f"{slot} {name}")

    return CpmmPoolState(
        amm_config=key("amm config"),
        pool_creator=ZERO_KEY,
        token_0_vault=key("vault 0"),
        token_1_vault=key("vault 1"),
        lp_mint=key("lp mint"),
        token_0_mint=mint_0,
        token_1_mint=mint_1,
        token_0_program=TOKEN_PROGRAM,
        token_1_program=TOKEN_PROGRAM,
        observation_key=key("observation"),
        **_zeros(_CPMM_NUMBERS),
    )


def _lb_pair(mint_x: Pubkey, mint_y: Pubkey, slot: int) -> LbPair:
    return LbPair(
        token_x_mint=mint_x,
        token_y_mint=mint_y,
        reserve_x=placeholder_key(f"{slot} reserve x"),
        reserve_y=placeholder_key(f"{slot} reserve y"),
        oracle=placeholder_key(f"{slot} oracle"),
        **_zeros(_DLMM_NUMBERS),
    )


def _zeros(names: tuple[str, ...]) -> dict[str, Any]:
    """The numeric fields, all 0: no instruction of a swap carries them."""
    return dict.fromkeys(names, 0)


_CPMM_NUMBERS = (
    "auth_bump", "status", "lp_mint_decimals", "mint_0_decimals", "mint_1_decimals",
    "lp_supply", "protocol_fees_token_0", "protocol_fees_token_1", "fund_fees_token_0",
    "fund_fees_token_1", "open_time",
)  # fmt: skip
_DLMM_NUMBERS = (
    "base_factor", "filter_period", "decay_period", "reduction_factor", "variable_fee_control",
    "max_volatility_accumulator", "min_bin_id", "max_bin_id", "protocol_share",
    "base_fee_power_factor", "volatility_accumulator", "volatility_reference",
    "index_reference", "last_update_timestamp", "active_id", "bin_step", "status",
)  # fmt: skip
