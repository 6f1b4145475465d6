"""The program-derived addresses (PDAs) of the pools' accounts, for both programs.

Every derivation is cached: each is a bump search of up to 255 SHA-256 hashes, and the same few
addresses are asked for on every order. Seeds are the programs' own ([RAY] states and
instructions, [MET] commons/src/pda.rs; keys in `order_engine.chain.layouts`).
"""

from __future__ import annotations

from functools import lru_cache

from solders.pubkey import Pubkey

from order_engine.chain.programs import METEORA_DLMM_PROGRAM, RAYDIUM_CPMM_PROGRAM

# --- Raydium CP-Swap ----------------------------------------------------------------------------


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


def amm_config_bump(index: int) -> int:
    """The config PDA's bump, stored as `AmmConfig.bump`."""
    return _amm_config_pda(index)[1]


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


# --- Meteora DLMM -------------------------------------------------------------------------------


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


def dlmm_lb_pair_bump(mint_x: Pubkey, mint_y: Pubkey, bin_step: int) -> int:
    """The pair PDA's bump, stored as `LbPair.bump_seed` of a pair at its canonical address."""
    return _lb_pair_pda(mint_x, mint_y, bin_step)[1]


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
