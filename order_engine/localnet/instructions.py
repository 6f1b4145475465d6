"""The localnet's transaction decoder: wire bytes -> typed instructions it knows how to execute.

The localnet runs no program binaries; it emulates the handful of instructions an order's
transaction carries (see `order_engine.chain.tx`). This module turns a transaction into those
instructions, each a frozen dataclass carrying its `index` in the message and its `accounts`
(key plus the signer / writable flags the message header gives it), or raises
`InstructionDecodeError(index, reason)`, which the localnet reports as
`{"InstructionError": [index, "InvalidInstructionData"]}` [SDK-TXE].

Layouts are those the builder writes, plus what a trader's other transactions carry: Compute
Budget tags 2/3 [SDK-CB], System Transfer, CreateAccount, InitializeNonceAccount and
AdvanceNonceAccount [SYS], ATA Create/CreateIdempotent and Token SyncNative/CloseAccount [SPL],
Raydium CPMM `swap_base_input` [RAY] and Meteora DLMM `swap` v1 [MET], Memo. Only static account
keys are resolved: a transaction using address lookup tables fails to decode here, since the
localnet serves no lookup tables.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain.programs import (
    ATA_CREATE,
    ATA_CREATE_IDEMPOTENT,
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    COMPUTE_BUDGET_SET_LIMIT,
    COMPUTE_BUDGET_SET_PRICE,
    CPMM_SWAP_BASE_INPUT_DISCRIMINATOR,
    DLMM_SWAP_DISCRIMINATOR,
    MEMO_PROGRAM,
    METEORA_DLMM_PROGRAM,
    RAYDIUM_CPMM_PROGRAM,
    SYSTEM_ADVANCE_NONCE_ACCOUNT,
    SYSTEM_CREATE_ACCOUNT,
    SYSTEM_INITIALIZE_NONCE_ACCOUNT,
    SYSTEM_PROGRAM,
    SYSTEM_TRANSFER,
    TOKEN_CLOSE_ACCOUNT,
    TOKEN_PROGRAM,
    TOKEN_SYNC_NATIVE,
)

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SWAP_ARGS = struct.Struct("<8sQQ")  # Anchor discriminator, then two Borsh u64 arguments
_CREATE_ACCOUNT = struct.Struct("<IQQ32s")  # bincode: variant, lamports, space, owner


class TransactionDecodeError(ValueError):
    """The bytes are not a well-formed, sanitized transaction."""


class InstructionDecodeError(ValueError):
    """Instruction `index` is for an unknown program or has data / accounts we cannot read."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"instruction {index}: {reason}")
        self.index = index
        self.reason = reason


class AccountRef(NamedTuple):
    """One account of an instruction, with the flags the message header gives its key."""

    pubkey: Pubkey
    is_signer: bool
    is_writable: bool


@dataclass(frozen=True, kw_only=True)
class DecodedInstruction:
    """Common part of every decoded instruction: its position and its accounts in order.

    `accounts` is excluded from equality so tests can compare on the typed fields alone.
    """

    program_id: ClassVar[Pubkey]
    index: int
    accounts: tuple[AccountRef, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class ComputeUnitLimit(DecodedInstruction):
    program_id: ClassVar[Pubkey] = COMPUTE_BUDGET_PROGRAM
    units: int


@dataclass(frozen=True)
class ComputeUnitPrice(DecodedInstruction):
    program_id: ClassVar[Pubkey] = COMPUTE_BUDGET_PROGRAM
    micro_lamports: int


@dataclass(frozen=True)
class CreateAssociatedTokenAccount(DecodedInstruction):
    """ATA Create (fails if the account exists) or CreateIdempotent (a no-op then)."""

    program_id: ClassVar[Pubkey] = ATA_PROGRAM
    funder: Pubkey
    account: Pubkey
    wallet: Pubkey
    mint: Pubkey
    token_program: Pubkey = TOKEN_PROGRAM
    idempotent: bool = True


@dataclass(frozen=True)
class SystemTransfer(DecodedInstruction):
    program_id: ClassVar[Pubkey] = SYSTEM_PROGRAM
    source: Pubkey
    destination: Pubkey
    lamports: int


@dataclass(frozen=True)
class CreateAccount(DecodedInstruction):
    """System CreateAccount: [funder (w,s), new account (w,s)]; lamports, space, owner."""

    program_id: ClassVar[Pubkey] = SYSTEM_PROGRAM
    funder: Pubkey
    account: Pubkey
    lamports: int
    space: int
    owner: Pubkey


@dataclass(frozen=True)
class InitializeNonceAccount(DecodedInstruction):
    """System InitializeNonceAccount: [nonce (w), RecentBlockhashes sysvar, Rent sysvar]."""

    program_id: ClassVar[Pubkey] = SYSTEM_PROGRAM
    nonce: Pubkey
    authority: Pubkey


@dataclass(frozen=True)
class AdvanceNonceAccount(DecodedInstruction):
    """System AdvanceNonceAccount: [nonce (w), RecentBlockhashes sysvar, authority (s)]."""

    program_id: ClassVar[Pubkey] = SYSTEM_PROGRAM
    nonce: Pubkey
    authority: Pubkey


@dataclass(frozen=True)
class SyncNative(DecodedInstruction):
    program_id: ClassVar[Pubkey] = TOKEN_PROGRAM
    account: Pubkey


@dataclass(frozen=True)
class CloseAccount(DecodedInstruction):
    program_id: ClassVar[Pubkey] = TOKEN_PROGRAM
    account: Pubkey
    destination: Pubkey
    owner: Pubkey


@dataclass(frozen=True)
class CpmmSwapBaseInput(DecodedInstruction):
    """Raydium CPMM `swap_base_input`; accounts in the `Swap` struct's order [RAY]."""

    program_id: ClassVar[Pubkey] = RAYDIUM_CPMM_PROGRAM
    payer: Pubkey
    authority: Pubkey
    amm_config: Pubkey
    pool_state: Pubkey
    input_token_account: Pubkey
    output_token_account: Pubkey
    input_vault: Pubkey
    output_vault: Pubkey
    input_token_program: Pubkey
    output_token_program: Pubkey
    input_mint: Pubkey
    output_mint: Pubkey
    observation_state: Pubkey
    amount_in: int
    minimum_amount_out: int


@dataclass(frozen=True)
class DlmmSwap(DecodedInstruction):
    """Meteora DLMM `swap` v1; `bin_arrays` are the remaining accounts, in walk order [MET].
    `bin_array_bitmap_extension` / `host_fee_in` equal to the program id mean "absent"."""

    program_id: ClassVar[Pubkey] = METEORA_DLMM_PROGRAM
    lb_pair: Pubkey
    bin_array_bitmap_extension: Pubkey
    reserve_x: Pubkey
    reserve_y: Pubkey
    user_token_in: Pubkey
    user_token_out: Pubkey
    token_x_mint: Pubkey
    token_y_mint: Pubkey
    oracle: Pubkey
    host_fee_in: Pubkey
    user: Pubkey
    token_x_program: Pubkey
    token_y_program: Pubkey
    event_authority: Pubkey
    program: Pubkey
    bin_arrays: tuple[Pubkey, ...]
    amount_in: int
    min_amount_out: int


@dataclass(frozen=True)
class Memo(DecodedInstruction):
    program_id: ClassVar[Pubkey] = MEMO_PROGRAM
    text: str


# --- decoding ----------------------------------------------------------------------------------


def decode_transaction(raw: bytes) -> VersionedTransaction:
    """Deserialize and sanitize wire bytes (legacy or v0); raise `TransactionDecodeError`.

    Size limits and signature checks are the RPC layer's, which answers them with their own
    error codes [AGV-RPC].
    """
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except Exception as exc:  # solders raises its own error types for malformed bytes
        raise TransactionDecodeError(f"failed to deserialize transaction: {exc}") from exc
    try:
        tx.sanitize()
    except Exception as exc:
        raise TransactionDecodeError(f"transaction failed to sanitize: {exc}") from exc
    return tx


def decode_instructions(tx: VersionedTransaction) -> list[DecodedInstruction]:
    """Every instruction of the transaction, typed, in order; raises `InstructionDecodeError`
    for the first one that is not one of ours or is malformed."""
    message = tx.message
    keys = message.account_keys
    flags = key_flags(message)
    decoded = []
    for index, compiled in enumerate(message.instructions):
        try:
            program = keys[compiled.program_id_index]
            accounts = tuple(AccountRef(keys[i], *flags[i]) for i in bytes(compiled.accounts))
        except IndexError:
            # An index into lookup-table addresses, which the localnet does not load.
            raise InstructionDecodeError(index, "account index out of range") from None
        decoder = _DECODERS.get(program)
        if decoder is None:
            raise InstructionDecodeError(index, f"unknown program {program}")
        decoded.append(decoder(index, bytes(compiled.data), accounts))
    return decoded


def key_flags(message: Any) -> list[tuple[bool, bool]]:
    """(is_signer, is_writable) per static key, from the header alone [SDK-MSG]: keys are
    ordered writable signers, read-only signers, writable non-signers, read-only non-signers."""
    header = message.header
    total = len(message.account_keys)
    signed = header.num_required_signatures
    writable_signed = signed - header.num_readonly_signed_accounts
    writable_unsigned_end = total - header.num_readonly_unsigned_accounts
    return [
        (i < signed, i < writable_signed or signed <= i < writable_unsigned_end)
        for i in range(total)
    ]


def writable_keys(message: Any, keys: Sequence[Pubkey]) -> tuple[str, ...]:
    """The accounts a message write-locks (what block space is charged per account): by the
    header, writable signers first, then writable non-signers [SDK-MSG]."""
    header = message.header
    signed = header.num_required_signatures
    writable_signed = keys[: signed - header.num_readonly_signed_accounts]
    writable_unsigned = keys[signed : len(keys) - header.num_readonly_unsigned_accounts]
    return tuple(str(k) for k in (*writable_signed, *writable_unsigned))


_Accounts = tuple[AccountRef, ...]


def _require_accounts(index: int, accounts: Sequence[AccountRef], count: int, what: str) -> None:
    if len(accounts) < count:
        raise InstructionDecodeError(index, f"{what} needs {count} accounts, got {len(accounts)}")


def _decode_compute_budget(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    if len(data) == 1 + _U32.size and data[0] == COMPUTE_BUDGET_SET_LIMIT:
        return ComputeUnitLimit(_U32.unpack_from(data, 1)[0], index=index, accounts=accounts)
    if len(data) == 1 + _U64.size and data[0] == COMPUTE_BUDGET_SET_PRICE:
        return ComputeUnitPrice(_U64.unpack_from(data, 1)[0], index=index, accounts=accounts)
    raise InstructionDecodeError(index, f"unsupported compute budget data {data.hex()}")


def _decode_system(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    tag = _U32.unpack_from(data)[0] if len(data) >= _U32.size else None
    keys = [ref.pubkey for ref in accounts]
    if tag == SYSTEM_TRANSFER and len(data) == _U32.size + _U64.size:
        _require_accounts(index, accounts, 2, "Transfer")
        lamports = _U64.unpack_from(data, _U32.size)[0]
        return SystemTransfer(keys[0], keys[1], lamports, index=index, accounts=accounts)
    if tag == SYSTEM_CREATE_ACCOUNT and len(data) == _CREATE_ACCOUNT.size:
        _require_accounts(index, accounts, 2, "CreateAccount")
        _, lamports, space, owner = _CREATE_ACCOUNT.unpack(data)
        return CreateAccount(
            keys[0], keys[1], lamports, space, Pubkey(owner), index=index, accounts=accounts
        )
    if tag == SYSTEM_INITIALIZE_NONCE_ACCOUNT and len(data) == _U32.size + 32:
        _require_accounts(index, accounts, 3, "InitializeNonceAccount")
        authority = Pubkey(data[_U32.size :])
        return InitializeNonceAccount(keys[0], authority, index=index, accounts=accounts)
    if tag == SYSTEM_ADVANCE_NONCE_ACCOUNT and len(data) == _U32.size:
        _require_accounts(index, accounts, 3, "AdvanceNonceAccount")
        return AdvanceNonceAccount(keys[0], keys[2], index=index, accounts=accounts)
    raise InstructionDecodeError(index, f"unsupported system instruction {data.hex()}")


def _decode_ata(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    # An empty payload is the original Create, from before the instruction enum existed [SPL].
    if data in (b"", bytes([ATA_CREATE])):
        idempotent = False
    elif data == bytes([ATA_CREATE_IDEMPOTENT]):
        idempotent = True
    else:
        raise InstructionDecodeError(index, f"unsupported ATA instruction {data.hex()}")
    _require_accounts(index, accounts, 6, "Create")
    funder, account, wallet, mint, _, token_program = (ref.pubkey for ref in accounts[:6])
    return CreateAssociatedTokenAccount(
        funder,
        account,
        wallet,
        mint,
        token_program,
        idempotent,
        index=index,
        accounts=accounts,
    )


def _decode_token(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    if data == bytes([TOKEN_SYNC_NATIVE]):
        _require_accounts(index, accounts, 1, "SyncNative")
        return SyncNative(accounts[0].pubkey, index=index, accounts=accounts)
    if data == bytes([TOKEN_CLOSE_ACCOUNT]):
        _require_accounts(index, accounts, 3, "CloseAccount")
        account, destination, owner = (ref.pubkey for ref in accounts[:3])
        return CloseAccount(account, destination, owner, index=index, accounts=accounts)
    raise InstructionDecodeError(index, f"unsupported token instruction {data[:1].hex()}")


def _swap_args(index: int, data: bytes, discriminator: bytes, name: str) -> tuple[int, int]:
    if len(data) != _SWAP_ARGS.size:
        raise InstructionDecodeError(index, f"{name} data is {_SWAP_ARGS.size} bytes")
    tag, amount_in, minimum_out = _SWAP_ARGS.unpack(data)
    if tag != discriminator:
        raise InstructionDecodeError(index, f"unsupported instruction {tag.hex()}")
    return amount_in, minimum_out


def _decode_cpmm(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    amount_in, minimum_out = _swap_args(
        index, data, CPMM_SWAP_BASE_INPUT_DISCRIMINATOR, "swap_base_input"
    )
    _require_accounts(index, accounts, 13, "swap_base_input")
    # The 13 accounts, in the program's order, fill the account fields in declaration order.
    values = [ref.pubkey for ref in accounts[:13]] + [amount_in, minimum_out]
    return CpmmSwapBaseInput(**_by_field(CpmmSwapBaseInput, values), index=index, accounts=accounts)


def _decode_dlmm(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    amount_in, minimum_out = _swap_args(index, data, DLMM_SWAP_DISCRIMINATOR, "swap")
    _require_accounts(index, accounts, 15, "swap")
    bin_arrays = tuple(ref.pubkey for ref in accounts[15:])
    values = [ref.pubkey for ref in accounts[:15]] + [bin_arrays, amount_in, minimum_out]
    return DlmmSwap(**_by_field(DlmmSwap, values), index=index, accounts=accounts)


def _by_field(cls: type[DecodedInstruction], values: list[Any]) -> dict[str, Any]:
    """`values` keyed by the instruction's own fields, in declaration order."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("index", "accounts")]
    return dict(zip(names, values, strict=True))


def _decode_memo(index: int, data: bytes, accounts: _Accounts) -> DecodedInstruction:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InstructionDecodeError(index, "memo is not valid UTF-8") from None
    return Memo(text, index=index, accounts=accounts)


_DECODERS: dict[Pubkey, Callable[[int, bytes, _Accounts], DecodedInstruction]] = {
    COMPUTE_BUDGET_PROGRAM: _decode_compute_budget,
    SYSTEM_PROGRAM: _decode_system,
    ATA_PROGRAM: _decode_ata,
    TOKEN_PROGRAM: _decode_token,
    RAYDIUM_CPMM_PROGRAM: _decode_cpmm,
    METEORA_DLMM_PROGRAM: _decode_dlmm,
    MEMO_PROGRAM: _decode_memo,
}
