"""The simulation's clock: wall time in the running service, virtual time in replays.

A virtual clock advances only when the simulation "waits" (a quote's latency, a swap's landing
time), so a replay of the same orders with the same seed is identical whatever the machine's
speed (used by the determinism test and the routing report).
"""

from __future__ import annotations

import threading
import time

SLOT_MS = 400
# Slot 0 of the simulated cluster; any fixed instant works, it only has to be shared.
GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def slot_at(ms: int) -> int:
    return (ms - GENESIS_MS) // SLOT_MS


def slot_start_ms(slot: int) -> int:
    return GENESIS_MS + slot * SLOT_MS


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep_ms(self, ms: int) -> None:
        if ms > 0:
            time.sleep(ms / 1000)


class VirtualClock:
    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def sleep_ms(self, ms: int) -> None:
        with self._lock:
            self._now_ms += max(0, ms)
