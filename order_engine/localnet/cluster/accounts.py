"""Accounts as the cluster serves them."""

from __future__ import annotations

import struct

RENT_LAMPORTS_PER_BYTE = 6_960  # 3480 lamports/byte-year × 2 years; 165-byte account = 2_039_280
ACCOUNT_STORAGE_OVERHEAD = 128
BPF_UPGRADEABLE_LOADER = "BPFLoaderUpgradeab1e11111111111111111111111"
NATIVE_LOADER = "NativeLoader1111111111111111111111111111111"
_MINT = struct.Struct("<I32sQB?I32s")  # SPL Mint, 82 bytes [SPL state.rs]


def rent_exempt(size: int) -> int:
    return (ACCOUNT_STORAGE_OVERHEAD + size) * RENT_LAMPORTS_PER_BYTE


class Account:
    """A served account; immutable once built. `cache` holds its encoded JSON fragments."""

    __slots__ = ("owner", "lamports", "data", "executable", "cache")

    def __init__(self, owner: str, lamports: int, data: bytes, executable: bool = False) -> None:
        self.owner = owner
        self.lamports = lamports
        self.data = data
        self.executable = executable
        self.cache: dict[str, str] = {}
