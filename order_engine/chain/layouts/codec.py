"""What every account layout shares: the decode error and the packing helpers."""

from __future__ import annotations

import struct

from solders.pubkey import Pubkey

ZERO_KEY = Pubkey.default()


class AccountDecodeError(ValueError):
    """Account data that is not the expected layout: wrong size, discriminator or tag."""


def to_pubkey(raw: bytes) -> Pubkey:
    return Pubkey.from_bytes(raw)


def check_size(name: str, data: bytes, size: int) -> None:
    if len(data) != size:
        raise AccountDecodeError(f"{name} is {size} bytes, got {len(data)}")


def check_discriminator(name: str, data: bytes, expected: bytes) -> None:
    if data[:8] != expected:
        raise AccountDecodeError(f"not a {name}: discriminator {bytes(data[:8]).hex()}")


def pack(name: str, layout: struct.Struct, *values: object) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:  # an int out of its field's range
        raise ValueError(f"cannot encode {name}: {exc}") from exc
