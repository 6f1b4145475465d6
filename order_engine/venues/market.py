"""The seeded market behind the simulated venues: where prices "should" be at any instant.

A token's reference price in USD moves like a random walk with occasional jumps, on the slot
clock: it is the sum of value-noise octaves (a seeded random value every L slots, linearly
interpolated) at several time scales, plus rare seeded jumps. Every venue's pool is pulled
toward the reference times its own slowly varying skew of up to ±2.5 %, so the two venues
differ by up to ~5 % as the brief asks. Everything is a pure function of (seed, instant), in
exact decimals, so any process computes the same market without sharing state.

Scales (assumption, research/dex.md §6.4): over the ~6 slots between a quote and its landing
the reference moves ~10 bps; over an hour a few percent.
"""

from __future__ import annotations

import random
from decimal import Decimal, localcontext

from order_engine.venues.clock import SLOT_MS

STABLECOINS = frozenset({"USDC", "USDT"})
# (interpolation length in slots, amplitude as a fraction of price)
OCTAVES: tuple[tuple[int, Decimal], ...] = (
    (8, Decimal("0.0010")),
    (64, Decimal("0.0040")),
    (512, Decimal("0.0100")),
    (4096, Decimal("0.0250")),
)
JUMP_EPOCH_SLOTS = 2_500  # ~17 minutes
JUMP_PROBABILITY = Decimal("0.25")
JUMP_SIZE = Decimal("0.02")
VENUE_SKEW = Decimal("0.025")
VENUE_SKEW_SLOTS = 1_500
_MILLION = 1_000_000


def _uniform(seed: int, *names: object) -> Decimal:
    """A seeded value in [-1, 1], exact (no binary floats)."""
    rng = random.Random(":".join([str(seed), *map(str, names)]))
    return Decimal(rng.randint(-_MILLION, _MILLION)) / _MILLION


def value_noise(seed: int, key: str, position: Decimal) -> Decimal:
    """Linearly interpolated seeded noise in [-1, 1]; continuous in `position`."""
    left = int(position // 1)
    frac = position - left
    a, b = _uniform(seed, key, left), _uniform(seed, key, left + 1)
    return a + (b - a) * frac


def _slot(at_ms: int) -> Decimal:
    return Decimal(at_ms) / SLOT_MS


def log_move(seed: int, symbol: str, at_ms: int) -> Decimal:
    """The reference's log-price offset from its starting level at `at_ms`."""
    slot = _slot(at_ms)
    move = sum(
        (
            amp * value_noise(seed, f"{symbol}:octave:{length}", slot / length)
            for length, amp in OCTAVES
        ),
        Decimal(0),
    )
    epoch = int(slot // JUMP_EPOCH_SLOTS)
    for past in range(epoch - 1, epoch + 1):  # a jump lasts for the next epoch too
        rng = random.Random(f"{seed}:{symbol}:jump:{past}")
        if Decimal(rng.randint(0, _MILLION)) / _MILLION < JUMP_PROBABILITY:
            jump_at = past * JUMP_EPOCH_SLOTS + rng.randint(0, JUMP_EPOCH_SLOTS - 1)
            if slot >= jump_at:
                move += JUMP_SIZE * _uniform(seed, symbol, "jump-size", past)
    return move


def reference_usd(seed: int, symbol: str, base_usd: Decimal, at_ms: int) -> Decimal:
    """Reference price of one whole token in USD at `at_ms`."""
    if symbol in STABLECOINS:
        return base_usd
    with localcontext() as ctx:
        ctx.prec = 28
        return base_usd * log_move(seed, symbol, at_ms).exp()


def venue_skew(seed: int, pool_id: str, at_ms: int) -> Decimal:
    """How far one venue's pool sits from the reference: within ±2.5 %, drifting slowly."""
    return VENUE_SKEW * value_noise(seed, f"{pool_id}:skew", _slot(at_ms) / VENUE_SKEW_SLOTS)
