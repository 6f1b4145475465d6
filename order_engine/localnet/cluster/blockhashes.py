"""Blockhashes: one per slot, derived from the seed, each valid for a fixed number of slots.

The blockhash of slot s is sha256(f"{seed}:blockhash:{s}"), valid through block height
s + validity − 1 (Solana keeps 151 recent blockhashes, so +150:
https://solana.com/docs/advanced/confirmation). Block height equals the slot: the localnet
skips no slot.
"""

from __future__ import annotations

import hashlib

from solders.hash import Hash


class Blockhashes:
    """The hashes of recent slots, cached both ways (slot -> hash, hash -> slot)."""

    def __init__(self, seed: int, validity: int) -> None:
        self.seed = seed
        self.validity = validity
        self._hash_slots: dict[bytes, int] = {}
        self._hash_cache: dict[int, bytes] = {}

    def digest(self, slot: int) -> bytes:
        digest = self._hash_cache.get(slot)
        if digest is None:
            digest = hashlib.sha256(f"{self.seed}:blockhash:{slot}".encode()).digest()
            if len(self._hash_cache) > 4 * self.validity + 64:
                low = slot - self.validity
                self._hash_cache = {s: h for s, h in self._hash_cache.items() if s >= low}
                self._hash_slots = {h: s for s, h in self._hash_cache.items()}
            self._hash_cache[slot] = digest
            self._hash_slots[digest] = slot
        return digest

    def text(self, slot: int) -> str:
        return str(Hash(self.digest(slot)))

    def latest(self, current: int) -> tuple[str, int, int]:
        """(blockhash, lastValidBlockHeight, slot) of the current slot."""
        return self.text(current), current + self.validity - 1, current

    def slot_of(self, digest: bytes, current: int) -> int | None:
        """The slot whose blockhash this is, if it is still valid at `current`; else None."""
        # Make sure the whole validity window is known (cheap after the first call).
        for slot in range(current - self.validity + 1, current + 1):
            if slot not in self._hash_cache:
                self.digest(slot)
        found = self._hash_slots.get(digest)
        if found is None or not found <= current <= found + self.validity - 1:
            return None
        return found
