"""The localnet's clock: wall time when serving, virtual time in-process (tests, replays).

A slot is `(now_ms - GENESIS_MS) // slot_ms`; block height equals the slot (no skipped slots).
The virtual clock only moves when told to, so an in-process localnet driven by it is fully
deterministic for a given seed.
"""

from __future__ import annotations

import time

# Slot 0 of the simulated cluster; any fixed instant works, it only has to be shared.
GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFAULT_SLOT_MS = 400


def slot_at(ms: int, slot_ms: int = DEFAULT_SLOT_MS) -> int:
    return (ms - GENESIS_MS) // slot_ms


def slot_start_ms(slot: int, slot_ms: int = DEFAULT_SLOT_MS) -> int:
    return GENESIS_MS + slot * slot_ms


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class VirtualClock:
    """A clock that advances only through `advance_ms` / `set_ms` (single-threaded use)."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance_ms(self, ms: int) -> None:
        self._now_ms += max(0, ms)

    def set_ms(self, ms: int) -> None:
        self._now_ms = max(self._now_ms, ms)
