"""The System program's instructions a trader's transactions use: Transfer, CreateAccount, and
the durable nonce pair InitializeNonceAccount / AdvanceNonceAccount [SYS].

A nonce account is a System-owned account of 80 bytes: u32 version (1, current), u32 state
(0 uninitialized, 1 initialized), the authority, the durable nonce, and the fee calculator's
lamports per signature. Its nonce is sha256("DURABLE_NONCE" || blockhash) of the blockhash
in force when it was initialized or last advanced (agave's `DurableNonce::from_blockhash`), so
it can advance once per slot; advancing it twice in one slot fails with the System program's
`NonceBlockhashNotExpired` (custom error 7).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from typing import Any

from solders.pubkey import Pubkey

from order_engine.chain.programs import (
    LAMPORTS_PER_SIGNATURE,
    NONCE_ACCOUNT_LENGTH,
    SYSTEM_PROGRAM,
)
from order_engine.localnet.execution.errors import (
    SYSTEM_ACCOUNT_ALREADY_IN_USE,
    SYSTEM_NONCE_BLOCKHASH_NOT_EXPIRED,
    SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS,
    InstructionFailed,
)
from order_engine.localnet.execution.metering import BUILTIN_UNITS
from order_engine.localnet.execution.state import DataAccount, Overlay

SYSTEM = str(SYSTEM_PROGRAM)
NONCE_VERSION_CURRENT = 1
NONCE_INITIALIZED = 1
_NONCE = struct.Struct("<II32s32sQ")
# Rent-exempt minimum of the 80-byte account: (128 + 80) × 6,960 lamports.
NONCE_RENT_EXEMPT = (128 + NONCE_ACCOUNT_LENGTH) * 6_960


@dataclass(frozen=True)
class Nonce:
    """An initialized nonce account's state."""

    authority: bytes
    durable_nonce: bytes
    lamports_per_signature: int = LAMPORTS_PER_SIGNATURE

    def encode(self) -> bytes:
        return _NONCE.pack(
            NONCE_VERSION_CURRENT,
            NONCE_INITIALIZED,
            self.authority,
            self.durable_nonce,
            self.lamports_per_signature,
        )


def durable_nonce(blockhash: bytes) -> bytes:
    return hashlib.sha256(b"DURABLE_NONCE" + blockhash).digest()


def read_nonce(account: DataAccount | None) -> Nonce | None:
    """The nonce in a System-owned 80-byte account, if it is initialized."""
    if account is None or account.owner != SYSTEM or len(account.data) != NONCE_ACCOUNT_LENGTH:
        return None
    _, state, authority, value, per_signature = _NONCE.unpack(account.data)
    if state != NONCE_INITIALIZED:
        return None
    return Nonce(authority, value, per_signature)


def advance(overlay: Overlay, address: str, blockhash: bytes) -> None:
    """Advance a nonce as a failed nonce transaction still does (no checks: the transaction
    was admitted with this nonce, so it is initialized and its authority signed)."""
    nonce = read_nonce(overlay.data_account(address))
    if nonce is not None:
        moved = replace(nonce, durable_nonce=durable_nonce(blockhash))
        overlay.accounts[address] = DataAccount(SYSTEM, moved.encode())


class SystemHandlers:
    """The System program's handlers, mixed into the runner (which provides these names)."""

    overlay: Overlay
    blockhash: bytes
    signers: frozenset[str]

    def _require_signer(self, index: int, address: str) -> None:
        raise NotImplementedError

    def _transfer(self, index: int, ix: Any, logs: list[str]) -> int:
        source, destination, amount = str(ix.source), str(ix.destination), ix.lamports
        self._require_signer(index, source)
        balance = self.overlay.wallet(source)
        if balance < amount:
            logs.append(f"Transfer: insufficient lamports {balance}, need {amount}")
            raise InstructionFailed(index, {"Custom": SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS})
        self.overlay.lamports[source] = balance - amount
        token = self.overlay.token(destination)
        if token is not None:
            self.overlay.tokens[destination] = replace(token, lamports=token.lamports + amount)
        else:
            self.overlay.lamports[destination] = self.overlay.wallet(destination) + amount
        return BUILTIN_UNITS

    def _create_account(self, index: int, ix: Any, logs: list[str]) -> int:
        funder, address = str(ix.funder), str(ix.account)
        self._require_signer(index, funder)
        self._require_signer(index, address)
        if self.overlay.data_account(address) is not None or self.overlay.token(address):
            logs.append(f"Create Account: account Address {{ address: {address}, base: None }}")
            raise InstructionFailed(index, {"Custom": SYSTEM_ACCOUNT_ALREADY_IN_USE})
        balance = self.overlay.wallet(funder)
        if balance < ix.lamports:
            logs.append(f"Transfer: insufficient lamports {balance}, need {ix.lamports}")
            raise InstructionFailed(index, {"Custom": SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS})
        self.overlay.lamports[funder] = balance - ix.lamports
        # A fresh address holds nothing (the faucet funds fee payers, not new accounts).
        self.overlay.lamports[address] = ix.lamports
        self.overlay.accounts[address] = DataAccount(str(ix.owner), bytes(ix.space))
        return BUILTIN_UNITS

    def _initialize_nonce(self, index: int, ix: Any, logs: list[str]) -> int:
        address = str(ix.nonce)
        account = self.overlay.data_account(address)
        if account is None or account.owner != SYSTEM or len(account.data) != NONCE_ACCOUNT_LENGTH:
            raise InstructionFailed(index, "InvalidAccountData")
        if read_nonce(account) is not None:
            logs.append(f"Initialize nonce account: Account {address} state is invalid")
            raise InstructionFailed(index, "InvalidAccountData")
        lamports = self.overlay.wallet(address)
        if lamports < NONCE_RENT_EXEMPT:
            logs.append(
                f"Initialize nonce account: insufficient lamports {lamports}, "
                f"need {NONCE_RENT_EXEMPT}"
            )
            raise InstructionFailed(index, "InsufficientFunds")
        nonce = Nonce(bytes(ix.authority), durable_nonce(self.blockhash))
        self.overlay.accounts[address] = DataAccount(SYSTEM, nonce.encode())
        return BUILTIN_UNITS

    def _advance_nonce(self, index: int, ix: Any, logs: list[str]) -> int:
        address = str(ix.nonce)
        nonce = read_nonce(self.overlay.data_account(address))
        if nonce is None:
            logs.append(f"Advance nonce account: Account {address} state is invalid")
            raise InstructionFailed(index, "InvalidAccountData")
        authority = str(ix.authority)
        if authority != _base58(nonce.authority) or authority not in self.signers:
            logs.append(
                f"Advance nonce account: Account {_base58(nonce.authority)} must be a signer"
            )
            raise InstructionFailed(index, "MissingRequiredSignature")
        following = durable_nonce(self.blockhash)
        if nonce.durable_nonce == following:
            logs.append("Advance nonce account: nonce can only advance once per slot")
            raise InstructionFailed(index, {"Custom": SYSTEM_NONCE_BLOCKHASH_NOT_EXPIRED})
        moved = replace(nonce, durable_nonce=following)
        self.overlay.accounts[address] = DataAccount(SYSTEM, moved.encode())
        return BUILTIN_UNITS


def _base58(raw: bytes) -> str:
    return str(Pubkey(raw))
