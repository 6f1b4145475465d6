"""The SPL Token account layout."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.pubkey import Pubkey

from order_engine.chain.layouts.codec import (
    ZERO_KEY,
    AccountDecodeError,
    check_size,
    pack,
    to_pubkey,
)

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
    return to_pubkey(raw) if tag else None


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
        return pack(
            "TokenAccount",
            _TOKEN_ACCOUNT,
            bytes(self.mint),
            bytes(self.owner),
            self.amount,
            0 if self.delegate is None else 1,
            bytes(self.delegate or ZERO_KEY),
            self.state,
            0 if self.is_native is None else 1,
            self.is_native or 0,
            self.delegated_amount,
            0 if self.close_authority is None else 1,
            bytes(self.close_authority or ZERO_KEY),
        )

    @classmethod
    def decode(cls, data: bytes) -> TokenAccount:
        check_size("TokenAccount", data, TOKEN_ACCOUNT_SIZE)
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
            mint=to_pubkey(mint),
            owner=to_pubkey(owner),
            amount=amount,
            is_native=native if native_tag else None,
            delegate=_option_key(delegate_tag, delegate),
            state=state,
            delegated_amount=delegated,
            close_authority=_option_key(close_tag, close),
        )
