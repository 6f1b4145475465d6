"""Program ids, instruction tags, Anchor discriminators and fixed costs of the programs we call.

Everything here is a constant or a cached PDA derivation, shared by the engine (which builds
transactions) and the localnet (which decodes and emulates them). The bracketed keys name the
public sources, listed with their commits in docs/localnet.md#sources:

* [SYS], [SPL], [SDK-CB]: System, SPL Token, Associated Token Account, Compute Budget;
* [RAY]: raydium-io/raydium-cp-swap;
* [MET]: MeteoraAg/dlmm-sdk, IDL v0.12.0;
* [ANC]: Anchor's discriminator rule, `sha256("<namespace>:<Name>")[:8]`.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from solders.pubkey import Pubkey

# --- program ids and well-known accounts ---------------------------------------------------------

SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
# The native mint: wrapped SOL, 9 decimals [SPL token/program/src/native_mint.rs].
WSOL_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")
# Mainnet ids from `declare_id!` [RAY programs/cp-swap/src/lib.rs] and the IDL address [MET].
RAYDIUM_CPMM_PROGRAM = Pubkey.from_string("CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C")
METEORA_DLMM_PROGRAM = Pubkey.from_string("LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo")

# --- fees and sizes ------------------------------------------------------------------------------

# Base fee per signature (Solana's "Fees" documentation, https://solana.com/docs/core/fees).
LAMPORTS_PER_SIGNATURE = 5_000
# Rent-exempt minimum of a 165-byte token account (MET ts-client `TOKEN_ACCOUNT_FEE`).
TOKEN_ACCOUNT_RENT = 2_039_280
# Priority fee is `ceil(cu_price * cu_limit / 1e6)` lamports [SDK-CB; prioritization_fee.rs].
MICRO_LAMPORTS_PER_LAMPORT = 1_000_000
DEFAULT_COMPUTE_UNIT_LIMIT = 200_000
MAX_COMPUTE_UNIT_LIMIT = 1_400_000
# PACKET_DATA_SIZE: IPv6 minimum MTU minus IPv6 and fragment headers [SDK-PKT].
MAX_TRANSACTION_SIZE = 1_232

# --- native instruction tags ---------------------------------------------------------------------

# Compute Budget: 1-byte tag then a little-endian integer, no accounts [SDK-CB].
COMPUTE_BUDGET_SET_LIMIT = 2  # + u32 units
COMPUTE_BUDGET_SET_PRICE = 3  # + u64 micro-lamports per CU
# System program: bincode enum, u32 LE variant index [SYS]. CreateAccount is 0 (+ u64 lamports,
# u64 space, owner); Transfer 2 (+ u64 lamports); AdvanceNonceAccount 4 (no data: accounts nonce,
# RecentBlockhashes sysvar, authority); InitializeNonceAccount 6 (+ authority; accounts nonce,
# RecentBlockhashes sysvar, Rent sysvar).
SYSTEM_CREATE_ACCOUNT = 0
SYSTEM_TRANSFER = 2
SYSTEM_ADVANCE_NONCE_ACCOUNT = 4
SYSTEM_INITIALIZE_NONCE_ACCOUNT = 6
# A nonce account's data: u32 version, u32 state, authority, durable nonce, lamports per
# signature (80 bytes) [SYS nonce state]; the nonce is sha256("DURABLE_NONCE" || blockhash).
NONCE_ACCOUNT_LENGTH = 80
RECENT_BLOCKHASHES_SYSVAR = Pubkey.from_string("SysvarRecentB1ockHashes11111111111111111111")
RENT_SYSVAR = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
# SPL Token: first data byte [SPL token/program/src/instruction.rs].
TOKEN_CLOSE_ACCOUNT = 9
TOKEN_SYNC_NATIVE = 17
# Associated Token Account: Borsh enum, 1 byte; 1 = CreateIdempotent [SPL associated-token-account].
ATA_CREATE = 0
ATA_CREATE_IDEMPOTENT = 1

# --- Anchor discriminators -----------------------------------------------------------------------


def anchor_discriminator(namespace: str, name: str) -> bytes:
    """Anchor's 8-byte tag: `sha256(f"{namespace}:{name}")[:8]` [ANC].

    `namespace` is "global" for instructions (snake_case name), "account" for account structs
    (CamelCase name) and "event" for events.
    """
    return hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8]


# Literals as published [RAY, MET]; tests recompute them with `anchor_discriminator`.
CPMM_SWAP_BASE_INPUT_DISCRIMINATOR = bytes.fromhex("8fbe5adac41e33de")
CPMM_SWAP_BASE_OUTPUT_DISCRIMINATOR = bytes.fromhex("37d96256a34ab4ad")
POOL_STATE_DISCRIMINATOR = bytes.fromhex("f7ede3f5d7c3de46")
AMM_CONFIG_DISCRIMINATOR = bytes.fromhex("daf42168cbcb2b6f")
OBSERVATION_STATE_DISCRIMINATOR = bytes.fromhex("7aaec5358109a584")
DLMM_SWAP_DISCRIMINATOR = bytes([248, 198, 158, 145, 225, 117, 135, 200])
LB_PAIR_DISCRIMINATOR = bytes([33, 11, 49, 98, 181, 101, 177, 13])
BIN_ARRAY_DISCRIMINATOR = bytes([92, 142, 92, 220, 5, 148, 70, 181])
# Derived by the same Anchor rule for the DLMM `Oracle` account.
DLMM_ORACLE_DISCRIMINATOR = anchor_discriminator("account", "Oracle")

# --- Anchor error codes the swaps raise ----------------------------------------------------------

CPMM_EXCEEDED_SLIPPAGE = 6005  # [RAY error.rs] ExceededSlippage, base-input amount < minimum
DLMM_EXCEEDED_SLIPPAGE = 6003  # [MET IDL] ExceededAmountSlippageTolerance

# --- PDAs ----------------------------------------------------------------------------------------

# Anchor's `#[event_cpi]` signer for DLMM: PDA ["__event_authority"] under the DLMM program
# [MET IDL; ANC lang/syn/src/parser/accounts/event_cpi.rs]. Mainnet: D1ZN9Wj1f...
DLMM_EVENT_AUTHORITY = Pubkey.find_program_address([b"__event_authority"], METEORA_DLMM_PROGRAM)[0]


@lru_cache(maxsize=65_536)  # the bump search hashes up to 255 times; every order asks again
def associated_token_address(
    wallet: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM
) -> Pubkey:
    """The wallet's associated token account for a mint: PDA [wallet, token program, mint]
    under the ATA program [SPL associated-token-account/client/src/address.rs]."""
    return Pubkey.find_program_address(
        [bytes(wallet), bytes(token_program), bytes(mint)], ATA_PROGRAM
    )[0]
