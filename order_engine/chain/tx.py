"""Build, sign and encode the swap transaction of one order (one leg per venue).

One v0 transaction without lookup tables carries the whole order, so a split either lands in
full or not at all (a transaction's instructions are atomic: Solana's documentation,
https://solana.com/docs/core/transactions). Its instructions, in order (`swap_instructions`):

1. Compute Budget SetComputeUnitLimit and SetComputeUnitPrice [SDK-CB];
2. when selling SOL: create the payer's wSOL ATA (idempotent), System Transfer `amount_in`
   lamports into it, Token SyncNative, so the venue sees wrapped SOL [SPL, SYS];
3. create the payer's ATA for the output mint (idempotent: a no-op when it exists);
4. one swap per leg: Raydium CPMM `swap_base_input` [RAY] or Meteora DLMM `swap` v1 with
   its bin arrays as remaining accounts [MET];
5. when SOL is sold or bought: Token CloseAccount of the wSOL ATA back to the payer, which
   unwraps the proceeds (or any unspent input) into lamports;
6. for a protected send, the tip: a System Transfer to one of the block engine's tip accounts
   (in the swap's own transaction, so it is never paid without the swap);
7. an optional Memo: the client's order id, or ours (the localnet keys injected faults by it).

The whole must fit in one packet, 1232 bytes (`sign_transaction` refuses more); intake sizes
the largest transaction an order could need from this same list (`transaction_size`).

Every user token account is the payer's associated token account under the SPL Token program
(the DLMM `swap` v1 pins that program). PDAs are cached in `programs` and `accounts`, so a build
costs a few solders calls and one signature.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from solders.hash import Hash
from solders.instruction import AccountMeta, CompiledInstruction, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from order_engine.chain.layouts.meteora import LbPair, swap_bin_array_indexes
from order_engine.chain.layouts.pdas import cpmm_authority, dlmm_bin_array_address
from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.programs import (
    ATA_CREATE_IDEMPOTENT,
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    COMPUTE_BUDGET_SET_LIMIT,
    COMPUTE_BUDGET_SET_PRICE,
    CPMM_SWAP_BASE_INPUT_DISCRIMINATOR,
    DLMM_EVENT_AUTHORITY,
    DLMM_SWAP_DISCRIMINATOR,
    LAMPORTS_PER_SIGNATURE,
    MAX_TRANSACTION_SIZE,
    MEMO_PROGRAM,
    METEORA_DLMM_PROGRAM,
    MICRO_LAMPORTS_PER_LAMPORT,
    RAYDIUM_CPMM_PROGRAM,
    SYSTEM_PROGRAM,
    SYSTEM_TRANSFER,
    TOKEN_CLOSE_ACCOUNT,
    TOKEN_PROGRAM,
    TOKEN_SYNC_NATIVE,
    WSOL_MINT,
    associated_token_address,
)

# Raised here, declared with the other failures (and importable from here).
from order_engine.domain.errors import TransactionTooLarge as TransactionTooLarge

RAYDIUM = "raydium"
METEORA = "meteora"
# The DLMM CLI passes three bin arrays [MET cli/src/instructions/swap_exact_in.rs]; a deeper walk
# fails on chain with BinArrayNotFound, so the engine sizes legs to stay within them.
MAX_BIN_ARRAYS_PER_SWAP = 3

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SWAP_ARGS = struct.Struct("<QQ")  # (amount_in, minimum_amount_out), Borsh u64 LE


@dataclass(frozen=True)
class SwapLeg:
    """One venue's share of an order: sell `amount_in` atoms of `input_mint` on `pool` for at
    least `minimum_out` atoms of `output_mint`.

    Raydium legs carry the pool's `CpmmPoolState` (`cpmm_state`); Meteora legs its `LbPair`
    (`lb_pair`) and the bin-array indexes to pass, in walk order (`SwapLeg.meteora` picks up to
    three existing arrays from the active bin in the swap direction).
    """

    venue: str
    pool: Pubkey
    amount_in: int
    minimum_out: int
    input_mint: Pubkey
    output_mint: Pubkey
    cpmm_state: CpmmPoolState | None = None
    lb_pair: LbPair | None = None
    bin_array_indexes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("amount_in", "minimum_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int of atoms, got {value!r}")
        if self.venue == RAYDIUM:
            if self.cpmm_state is None:
                raise ValueError("a raydium leg needs the pool's CpmmPoolState")
            mints = {self.cpmm_state.token_0_mint, self.cpmm_state.token_1_mint}
        elif self.venue == METEORA:
            if self.lb_pair is None:
                raise ValueError("a meteora leg needs the pool's LbPair")
            mints = {self.lb_pair.token_x_mint, self.lb_pair.token_y_mint}
            object.__setattr__(self, "bin_array_indexes", tuple(self.bin_array_indexes))
        else:
            raise ValueError(f"unknown venue {self.venue!r}")
        if {self.input_mint, self.output_mint} != mints or self.input_mint == self.output_mint:
            raise ValueError("the leg's mints are not the pool's two mints")

    @classmethod
    def raydium(
        cls,
        pool: Pubkey,
        state: CpmmPoolState,
        input_mint: Pubkey,
        amount_in: int,
        minimum_out: int,
    ) -> SwapLeg:
        """A CPMM leg; the output mint is the pool's other mint."""
        output_mint = state.token_1_mint if input_mint == state.token_0_mint else state.token_0_mint
        return cls(RAYDIUM, pool, amount_in, minimum_out, input_mint, output_mint, cpmm_state=state)

    @classmethod
    def meteora(
        cls,
        pool: Pubkey,
        pair: LbPair,
        input_mint: Pubkey,
        amount_in: int,
        minimum_out: int,
        bin_array_indexes: Sequence[int] | None = None,
    ) -> SwapLeg:
        """A DLMM leg; by default the bin arrays are the first three existing ones of the walk."""
        swap_for_y = input_mint == pair.token_x_mint
        output_mint = pair.token_y_mint if swap_for_y else pair.token_x_mint
        if bin_array_indexes is None:
            bin_array_indexes = swap_bin_array_indexes(pair, swap_for_y, MAX_BIN_ARRAYS_PER_SWAP)
        return cls(
            METEORA,
            pool,
            amount_in,
            minimum_out,
            input_mint,
            output_mint,
            lb_pair=pair,
            bin_array_indexes=tuple(bin_array_indexes),
        )


# --- instructions ------------------------------------------------------------------------------


def set_compute_unit_limit(units: int) -> Instruction:
    """`02` + u32 LE units, no accounts [SDK-CB]."""
    data = bytes([COMPUTE_BUDGET_SET_LIMIT]) + _U32.pack(units)
    return Instruction(COMPUTE_BUDGET_PROGRAM, data, [])


def set_compute_unit_price(micro_lamports: int) -> Instruction:
    """`03` + u64 LE micro-lamports per compute unit, no accounts [SDK-CB]."""
    data = bytes([COMPUTE_BUDGET_SET_PRICE]) + _U64.pack(micro_lamports)
    return Instruction(COMPUTE_BUDGET_PROGRAM, data, [])


def create_associated_token_account_idempotent(
    funder: Pubkey, wallet: Pubkey, mint: Pubkey
) -> Instruction:
    """ATA CreateIdempotent (data `01`): [funder (w,s), ata (w), wallet, mint, system, token]."""
    accounts = [
        AccountMeta(funder, is_signer=True, is_writable=True),
        AccountMeta(associated_token_address(wallet, mint), is_signer=False, is_writable=True),
        AccountMeta(wallet, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
    ]
    return Instruction(ATA_PROGRAM, bytes([ATA_CREATE_IDEMPOTENT]), accounts)


def system_transfer(source: Pubkey, destination: Pubkey, lamports: int) -> Instruction:
    """System Transfer: bincode u32 variant 2 + u64 lamports; [from (w,s), to (w)] [SYS]."""
    accounts = [
        AccountMeta(source, is_signer=True, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
    ]
    return Instruction(SYSTEM_PROGRAM, _U32.pack(SYSTEM_TRANSFER) + _U64.pack(lamports), accounts)


def sync_native(account: Pubkey) -> Instruction:
    """Token SyncNative (`11`): the wSOL account's amount catches up with its lamports."""
    meta = AccountMeta(account, is_signer=False, is_writable=True)
    return Instruction(TOKEN_PROGRAM, bytes([TOKEN_SYNC_NATIVE]), [meta])


def close_account(account: Pubkey, destination: Pubkey, owner: Pubkey) -> Instruction:
    """Token CloseAccount (`09`): [account (w), destination (w), owner (s)]; all lamports move."""
    accounts = [
        AccountMeta(account, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_PROGRAM, bytes([TOKEN_CLOSE_ACCOUNT]), accounts)


def memo_instruction(text: str) -> Instruction:
    """A Memo with no signer accounts; the data is the UTF-8 text."""
    return Instruction(MEMO_PROGRAM, text.encode("utf-8"), [])


def cpmm_swap_base_input(payer: Pubkey, leg: SwapLeg) -> Instruction:
    """Raydium CPMM `swap_base_input(amount_in, minimum_amount_out)` with the 13 accounts of the
    `Swap` struct in order [RAY instructions/swap_base_input.rs]."""
    state = leg.cpmm_state
    assert state is not None  # checked by SwapLeg
    if leg.input_mint == state.token_0_mint:
        input_vault, output_vault = state.token_0_vault, state.token_1_vault
        input_program, output_program = state.token_0_program, state.token_1_program
    else:
        input_vault, output_vault = state.token_1_vault, state.token_0_vault
        input_program, output_program = state.token_1_program, state.token_0_program
    user_in = associated_token_address(payer, leg.input_mint)
    user_out = associated_token_address(payer, leg.output_mint)
    accounts = [
        AccountMeta(payer, is_signer=True, is_writable=False),
        AccountMeta(cpmm_authority(), is_signer=False, is_writable=False),
        AccountMeta(state.amm_config, is_signer=False, is_writable=False),
        AccountMeta(leg.pool, is_signer=False, is_writable=True),
        AccountMeta(user_in, is_signer=False, is_writable=True),
        AccountMeta(user_out, is_signer=False, is_writable=True),
        AccountMeta(input_vault, is_signer=False, is_writable=True),
        AccountMeta(output_vault, is_signer=False, is_writable=True),
        AccountMeta(input_program, is_signer=False, is_writable=False),
        AccountMeta(output_program, is_signer=False, is_writable=False),
        AccountMeta(leg.input_mint, is_signer=False, is_writable=False),
        AccountMeta(leg.output_mint, is_signer=False, is_writable=False),
        AccountMeta(state.observation_key, is_signer=False, is_writable=True),
    ]
    data = CPMM_SWAP_BASE_INPUT_DISCRIMINATOR + _SWAP_ARGS.pack(leg.amount_in, leg.minimum_out)
    return Instruction(RAYDIUM_CPMM_PROGRAM, data, accounts)


def dlmm_swap(payer: Pubkey, leg: SwapLeg) -> Instruction:
    """Meteora DLMM `swap(amount_in, min_amount_out)` v1: 15 named accounts, then the bin arrays
    (writable) as remaining accounts [MET IDL]. The absent optional accounts
    (bitmap extension, host fee) are the program id, read-only, as Anchor clients do [ANC
    to_account_metas.rs]."""
    pair = leg.lb_pair
    assert pair is not None  # checked by SwapLeg
    user_in = associated_token_address(payer, leg.input_mint)
    user_out = associated_token_address(payer, leg.output_mint)
    program = AccountMeta(METEORA_DLMM_PROGRAM, is_signer=False, is_writable=False)
    accounts = [
        AccountMeta(leg.pool, is_signer=False, is_writable=True),
        program,  # bin_array_bitmap_extension: none, every array is in the pair's own bitmap
        AccountMeta(pair.reserve_x, is_signer=False, is_writable=True),
        AccountMeta(pair.reserve_y, is_signer=False, is_writable=True),
        AccountMeta(user_in, is_signer=False, is_writable=True),
        AccountMeta(user_out, is_signer=False, is_writable=True),
        AccountMeta(pair.token_x_mint, is_signer=False, is_writable=False),
        AccountMeta(pair.token_y_mint, is_signer=False, is_writable=False),
        AccountMeta(pair.oracle, is_signer=False, is_writable=True),
        program,  # host_fee_in: none
        AccountMeta(payer, is_signer=True, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(DLMM_EVENT_AUTHORITY, is_signer=False, is_writable=False),
        program,
    ]
    accounts.extend(
        AccountMeta(dlmm_bin_array_address(leg.pool, index), is_signer=False, is_writable=True)
        for index in leg.bin_array_indexes
    )
    data = DLMM_SWAP_DISCRIMINATOR + _SWAP_ARGS.pack(leg.amount_in, leg.minimum_out)
    return Instruction(METEORA_DLMM_PROGRAM, data, accounts)


def swap_instruction(payer: Pubkey, leg: SwapLeg) -> Instruction:
    """The leg's venue instruction."""
    if leg.venue == RAYDIUM:
        return cpmm_swap_base_input(payer, leg)
    return dlmm_swap(payer, leg)


# --- the transaction ---------------------------------------------------------------------------


def swap_instructions(
    owner: Pubkey,
    input_mint: Pubkey,
    output_mint: Pubkey,
    amount_in: int,
    legs: Sequence[SwapLeg],
    memo: str | None,
    compute_unit_limit: int,
    compute_unit_price: int,
    tip: tuple[Pubkey, int] | None = None,
) -> list[Instruction]:
    """Every instruction of one order's swap transaction, in order (the module docstring).

    The one list both the executor's signed transaction (`build_swap` in
    services/execution/swap_transaction.py, through `sign_transaction`) and intake's
    worst-case size (`worst_case_size` there, through `transaction_size`) are made of: an
    instruction added here is counted by both. `tip`: (a block engine tip account, lamports),
    a System transfer after the swap, in the same transaction so that the tip is never paid
    without it. Raises `ValueError` for legs that do not trade `input_mint` for `output_mint`.
    """
    if not legs:
        raise ValueError("a swap transaction needs at least one leg")
    for leg in legs:
        if leg.input_mint != input_mint or leg.output_mint != output_mint:
            raise ValueError(f"leg on {leg.pool} does not trade the order's mints")
    if sum(leg.amount_in for leg in legs) != amount_in:
        raise ValueError("amount_in is not the sum of the legs' inputs")
    instructions = [
        set_compute_unit_limit(compute_unit_limit),
        set_compute_unit_price(compute_unit_price),
    ]
    wsol_account = associated_token_address(owner, WSOL_MINT)
    if input_mint == WSOL_MINT:
        instructions += [
            create_associated_token_account_idempotent(owner, owner, WSOL_MINT),
            system_transfer(owner, wsol_account, amount_in),
            sync_native(wsol_account),
        ]
    instructions.append(create_associated_token_account_idempotent(owner, owner, output_mint))
    instructions.extend(swap_instruction(owner, leg) for leg in legs)
    if WSOL_MINT in (input_mint, output_mint):
        instructions.append(close_account(wsol_account, owner, owner))
    if tip is not None:
        instructions.append(system_transfer(owner, tip[0], tip[1]))
    if memo is not None:
        instructions.append(memo_instruction(memo))
    return instructions


def build_swap_transaction(
    payer: Keypair,
    blockhash: Hash,
    input_mint: Pubkey,
    output_mint: Pubkey,
    amount_in: int,
    legs: Sequence[SwapLeg],
    memo: str | None,
    compute_unit_limit: int,
    compute_unit_price: int,
    tip: tuple[Pubkey, int] | None = None,
    signed: bool = True,
) -> VersionedTransaction:
    """The signed v0 transaction of `swap_instructions`; `signed=False` gives the unsigned
    draft (a default signature) that the engine simulates before it signs.

    `amount_in` must equal the legs' inputs summed (it is the amount wrapped when selling SOL);
    each leg's `minimum_out` is the caller's share of the order's minimum. Raises `ValueError`
    for legs that do not trade `input_mint` for `output_mint`, and `TransactionTooLarge` when
    the result exceeds 1232 bytes (fewer bin arrays or a shorter memo would fit).
    """
    instructions = swap_instructions(
        payer.pubkey(),
        input_mint,
        output_mint,
        amount_in,
        legs,
        memo,
        compute_unit_limit,
        compute_unit_price,
        tip,
    )
    return sign_transaction(payer, blockhash, instructions, signed)


def sign_transaction(
    payer: Keypair, blockhash: Hash, instructions: Sequence[Instruction], signed: bool = True
) -> VersionedTransaction:
    """The v0 transaction of `instructions`, paid and signed by `payer` (with `signed=False`,
    carrying a default signature instead); `TransactionTooLarge` when it exceeds 1232 bytes."""
    message = MessageV0.try_compile(payer.pubkey(), list(instructions), [], blockhash)
    if signed:
        tx = VersionedTransaction(message, [payer])
    else:
        tx = VersionedTransaction.populate(message, [Signature.default()])
    size = len(bytes(tx))
    if size > MAX_TRANSACTION_SIZE:
        raise TransactionTooLarge(
            f"the swap transaction is {size} bytes, over Solana's {MAX_TRANSACTION_SIZE}-byte limit"
        )
    return tx


def transaction_size(payer: Pubkey, instructions: Sequence[Instruction]) -> int:
    """The wire size in bytes of the v0 transaction of `instructions`, signed by its required
    signers, without signing it: the signature count (compact-u16), 64 bytes per signature,
    then the versioned message. Equal to `len(bytes(tx))` of the signed transaction (tested)."""
    message = MessageV0.try_compile(payer, list(instructions), [], Hash.default())
    signatures = message.header.num_required_signatures
    return len(_compact_u16(signatures)) + 64 * signatures + len(to_bytes_versioned(message))


def _compact_u16(value: int) -> bytes:
    """Solana's short-vec length prefix: 7 bits per byte, low first [SDK-SV]."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def with_budget(
    draft: VersionedTransaction,
    payer: Keypair,
    compute_unit_limit: int,
    compute_unit_price: int,
    tip_lamports: int | None,
) -> VersionedTransaction:
    """`draft` (as `build_swap_transaction` made it, signed or not) with another compute unit
    limit, price and tip, signed by `payer`: the same accounts and instructions, only those
    three instructions' fixed-width data rewritten, so the size is the draft's and nothing is
    compiled again. The tip transfer is the instruction before the memo (or the last)."""
    message = draft.message
    assert isinstance(message, MessageV0)  # build_swap_transaction compiles v0 only
    instructions = list(message.instructions)
    budget = [
        (0, bytes([COMPUTE_BUDGET_SET_LIMIT]) + _U32.pack(compute_unit_limit)),
        (1, bytes([COMPUTE_BUDGET_SET_PRICE]) + _U64.pack(compute_unit_price)),
    ]
    if tip_lamports is not None:
        keys = message.account_keys
        last = instructions[-1]
        tip_index = len(instructions) - (2 if keys[last.program_id_index] == MEMO_PROGRAM else 1)
        data = _U32.pack(SYSTEM_TRANSFER) + _U64.pack(tip_lamports)
        budget.append((tip_index, data))
    for index, data in budget:
        old = instructions[index]
        instructions[index] = CompiledInstruction(old.program_id_index, data, old.accounts)
    patched = MessageV0(
        message.header,
        message.account_keys,
        message.recent_blockhash,
        instructions,
        message.address_table_lookups,
    )
    return VersionedTransaction(patched, [payer])


def signature_of(tx: VersionedTransaction) -> str:
    """The transaction id: base58 of the fee payer's signature (what sendTransaction returns)."""
    return str(tx.signatures[0])


def encode_transaction(tx: VersionedTransaction) -> str:
    """base64 of the wire bytes, for sendTransaction with `"encoding": "base64"`."""
    return base64.b64encode(bytes(tx)).decode("ascii")


def priority_fee_lamports(compute_unit_limit: int, compute_unit_price: int) -> int:
    """`ceil(price * limit / 1e6)` lamports [SDK-CB; prioritization_fee.rs]."""
    return -(-compute_unit_price * compute_unit_limit // MICRO_LAMPORTS_PER_LAMPORT)


def transaction_fee_lamports(
    compute_unit_limit: int, compute_unit_price: int, signatures: int = 1
) -> int:
    """Base fee per signature plus the priority fee: what the payer is debited at landing."""
    return signatures * LAMPORTS_PER_SIGNATURE + priority_fee_lamports(
        compute_unit_limit, compute_unit_price
    )
