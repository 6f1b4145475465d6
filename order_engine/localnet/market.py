"""The seeded market behind the localnet's pools: where prices "should" be at any instant.

A token's reference price in USD moves like a random walk with occasional jumps: the sum of
value-noise octaves (a seeded random value every L market steps, linearly interpolated) at
several time scales, plus rare seeded jumps. Every venue's pool is pulled toward the reference
times its own slowly varying skew of up to ±2.5 %, so the two venues differ by up to ~5 %.
Everything is a pure function of (seed, instant), in exact decimals, so a restart of the
localnet finds the same market.

On top of the pure walk, `Market` holds per-token multiplicative overrides: `move SOL/USDC
--price 250` sets SOL's override so that its reference is 250 USDC at that instant; from then on
SOL keeps walking from there. A launched token gets an entry the same way.

Scales (an assumption, docs/venues.md): over the ~6 slots between a quote and its landing the
reference moves ~10 bps; over an hour a few percent. The walk's time step is fixed at 400 ms
whatever LOCALNET_SLOT_MS is, so a faster test cluster does not make a more volatile market.
"""

from __future__ import annotations

import random
from decimal import Decimal, localcontext
from functools import lru_cache

STEP_MS = 400
STABLECOINS = frozenset({"USDC", "USDT"})
# (interpolation length in steps, amplitude as a fraction of price)
OCTAVES: tuple[tuple[int, Decimal], ...] = (
    (8, Decimal("0.0010")),
    (64, Decimal("0.0040")),
    (512, Decimal("0.0100")),
    (4096, Decimal("0.0250")),
)
JUMP_EPOCH_STEPS = 2_500  # ~17 minutes
JUMP_PROBABILITY = Decimal("0.25")
JUMP_SIZE = Decimal("0.02")
VENUE_SKEW = Decimal("0.025")
VENUE_SKEW_STEPS = 1_500
_MILLION = 1_000_000
_CACHE_LIMIT = 4_096


@lru_cache(maxsize=65_536)  # seeding a Random hashes its seed; the same points recur for hours
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


def _step(at_ms: int) -> Decimal:
    return Decimal(at_ms) / STEP_MS


def log_move(seed: int, symbol: str, at_ms: int) -> Decimal:
    """The reference's log-price offset from its starting level at `at_ms`."""
    step = _step(at_ms)
    move = sum(
        (
            amp * value_noise(seed, f"{symbol}:octave:{length}", step / length)
            for length, amp in OCTAVES
        ),
        Decimal(0),
    )
    epoch = int(step // JUMP_EPOCH_STEPS)
    for past in range(epoch - 1, epoch + 1):  # a jump lasts for the next epoch too
        jump = _jump(seed, symbol, past)
        if jump is not None and step >= jump[0]:
            move += jump[1]
    return move


@lru_cache(maxsize=4_096)
def _jump(seed: int, symbol: str, epoch: int) -> tuple[int, Decimal] | None:
    """(step it happens at, log size) of the epoch's jump, if it has one."""
    rng = random.Random(f"{seed}:{symbol}:jump:{epoch}")
    if Decimal(rng.randint(0, _MILLION)) / _MILLION < JUMP_PROBABILITY:
        jump_at = epoch * JUMP_EPOCH_STEPS + rng.randint(0, JUMP_EPOCH_STEPS - 1)
        return jump_at, JUMP_SIZE * _uniform(seed, symbol, "jump-size", epoch)
    return None


def walk_usd(seed: int, symbol: str, base_usd: Decimal, at_ms: int) -> Decimal:
    """The pure walk: reference price of one whole token in USD at `at_ms`, no override."""
    if symbol in STABLECOINS:
        return base_usd
    with localcontext() as ctx:
        ctx.prec = 28
        return base_usd * log_move(seed, symbol, at_ms).exp()


def venue_skew(seed: int, pool_id: str, at_ms: int) -> Decimal:
    """How far one venue's pool sits from the reference: within ±2.5 %, drifting slowly."""
    return VENUE_SKEW * value_noise(seed, f"{pool_id}:skew", _step(at_ms) / VENUE_SKEW_STEPS)


class Market:
    """Reference prices of every token the localnet lists, with `move` overrides applied.

    `base_usd` is each token's starting USD price; `overrides` multiplies a token's walk. Both
    are plain dicts the cluster persists. Results are cached per (symbol, instant): a slot tick
    asks for the same few tokens once per pool.
    """

    def __init__(
        self,
        seed: int,
        base_usd: dict[str, Decimal],
        overrides: dict[str, Decimal] | None = None,
    ) -> None:
        self.seed = seed
        self.base_usd = dict(base_usd)
        self.overrides = dict(overrides or {})
        self._cache: dict[tuple[str, int], Decimal] = {}
        self._skew_cache: dict[tuple[str, int], Decimal] = {}

    def reference_usd(self, symbol: str, at_ms: int) -> Decimal:
        key = (symbol, at_ms)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        walk = walk_usd(self.seed, symbol, self.base_usd[symbol], at_ms)
        override = self.overrides.get(symbol)
        value = walk if override is None else walk * override
        self._cache[key] = value
        return value

    def skew(self, pool_id: str, at_ms: int) -> Decimal:
        key = (pool_id, at_ms)
        cached = self._skew_cache.get(key)
        if cached is None:
            if len(self._skew_cache) > _CACHE_LIMIT:
                self._skew_cache.clear()
            cached = self._skew_cache[key] = venue_skew(self.seed, pool_id, at_ms)
        return cached

    def price(self, base: str, quote: str, at_ms: int) -> Decimal:
        """Whole `quote` tokens per whole `base` token at `at_ms`."""
        with localcontext() as ctx:
            ctx.prec = 28
            return self.reference_usd(base, at_ms) / self.reference_usd(quote, at_ms)

    def set_price(self, base: str, quote: str, price: Decimal, at_ms: int) -> None:
        """Make one `base` worth `price` `quote` at `at_ms`, by scaling `base`'s override."""
        if price <= 0:
            raise ValueError("price must be positive")
        with localcontext() as ctx:
            ctx.prec = 28
            current = self.price(base, quote, at_ms)
            self.overrides[base] = self.overrides.get(base, Decimal(1)) * price / current
        self._cache.clear()

    def add_token(self, symbol: str, usd: Decimal, at_ms: int) -> None:
        """List a new token whose reference is `usd` at `at_ms` and walks from there."""
        self.base_usd[symbol] = usd
        self.overrides.pop(symbol, None)
        with localcontext() as ctx:
            ctx.prec = 28
            self.overrides[symbol] = usd / walk_usd(self.seed, symbol, usd, at_ms)
        self._cache.clear()
