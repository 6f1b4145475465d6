"""When a waiting transaction is worth sending again: once it is later than nearly all of this
process's recent transactions took to land.

The engine sends with `maxRetries: 0` (Solana's documentation, "Retrying Transactions"), so a
transaction no leader received lands only if it is sent again. Sending it again costs a request
on both sides and never changes what lands (one signature lands at most once), so the first
re-send is worth making once the transaction is late, not while it is on time: after the 95th
percentile of the last `WINDOW` landings' slots from send to land, plus a quarter, plus
`DETECT_SLOTS` for the poller to see a landing. On a chain where swaps land in a slot or two
that is under two seconds; where they take 2–3 s it is about five, instead of re-sending a third
of the swaps that were about to land. Until `MIN_SAMPLES` have landed, and at most twice over,
the configured interval holds.
"""

from __future__ import annotations

import math
import threading
from collections import deque

from order_engine.chain.fees import percentile

WINDOW = 256  # the most recent landings the percentile is taken over
MIN_SAMPLES = 32  # fewer landings than this say too little: the configured interval holds
PERCENTILE = 95
DETECT_SLOTS = 2  # the slot it lands in ends, then the poller's next round sees it


class LandingDelays:
    """Slots from send to land of this process's recent transactions (thread-safe)."""

    def __init__(self, slot_ms: int) -> None:
        self.slot_ms = slot_ms
        self._slots: deque[int] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def landed(self, slots: int) -> None:
        """One transaction landed `slots` after the slot it was built in."""
        with self._lock:
            self._slots.append(max(slots, 0))

    def first_resend_s(self, interval_s: float) -> float:
        """Seconds after the send to send the same bytes again the first time (then every
        `interval_s`): `interval_s` until enough have landed, else late by the recent
        landings, at most twice `interval_s`."""
        with self._lock:
            if len(self._slots) < MIN_SAMPLES:
                return interval_s
            recent = list(self._slots)
        slots = math.ceil(percentile(recent, PERCENTILE) * 5 / 4) + DETECT_SLOTS
        return min(slots * self.slot_ms / 1000, 2 * interval_s)
