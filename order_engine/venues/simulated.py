"""Simulated Raydium and Meteora venues over pool state shared through PostgreSQL.

A quote reads the pool's stored state, lets the market's arbitrage catch it up to "now" (the
stored state is only as fresh as the pool's last trade), and runs the venue's exact integer
math. Swaps are applied by the simulated chain (`order_engine.chain`) when a transaction lands,
under a row lock, so every worker process sees one consistent market.
"""

from __future__ import annotations

import random
import threading
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from order_engine.config import Settings
from order_engine.models import SimPool
from order_engine.tokens import Token
from order_engine.venues import catalogue, pools
from order_engine.venues.base import Quote
from order_engine.venues.clock import slot_at
from order_engine.venues.errors import NoRoute


class PoolStore:
    """Reads and writes pool rows; seeds the catalogue on first use in each process."""

    _seeded: set[tuple[str, int]] = set()
    _seed_lock = threading.Lock()

    def __init__(self, engine: Engine, seed: int, clock) -> None:
        self.engine = engine
        self.seed = seed
        self.clock = clock

    def ensure_seeded(self) -> None:
        key = (str(self.engine.url), self.seed)
        if key in self._seeded:
            return
        with self._seed_lock, self.engine.begin() as conn:
            now_ms = self.clock.now_ms()
            rows = [
                {
                    "pool_id": spec.pool_id,
                    "venue": spec.venue,
                    "mint_x": spec.token_x.mint,
                    "mint_y": spec.token_y.mint,
                    "state": spec.initial_state(self.seed, now_ms),
                }
                for spec in catalogue.POOLS
            ]
            conn.execute(insert(SimPool).values(rows).on_conflict_do_nothing())
            self._seeded.add(key)

    def market_view(self, pool_id: str, at_ms: int) -> dict[str, Any]:
        """The pool as the market has it at `at_ms`: stored state plus arbitrage since."""
        self.ensure_seeded()
        with self.engine.connect() as conn:
            state = conn.execute(
                select(SimPool.state).where(SimPool.pool_id == pool_id)
            ).scalar_one()
        return self.catch_up(pool_id, state, at_ms)

    def catch_up(self, pool_id: str, state: dict[str, Any], at_ms: int) -> dict[str, Any]:
        """Arbitrage the pool to the market's price at `at_ms` (never backwards in time)."""
        at_ms = max(at_ms, int(state.get("market_at_ms", 0)))
        target = catalogue.spec(pool_id).target_mid(self.seed, at_ms)
        caught_up = pools.arbitrage(state, target, at_ms // 1000)
        return {**caught_up, "market_at_ms": at_ms}

    def lock(self, conn: Connection, pool_id: str) -> dict[str, Any]:
        """The pool's stored state, row-locked until `conn`'s transaction ends."""
        self.ensure_seeded()
        query = select(SimPool.state).where(SimPool.pool_id == pool_id).with_for_update()
        return conn.execute(query).scalar_one()

    def save(self, conn: Connection, pool_id: str, state: dict[str, Any]) -> None:
        conn.execute(
            update(SimPool)
            .where(SimPool.pool_id == pool_id)
            .values(state=state, updated_at=func.now())
        )


class SimulatedVenue:
    """A venue answering quotes from the shared pool state after a simulated network delay."""

    def __init__(self, name: str, store: PoolStore, settings: Settings, clock) -> None:
        self.name = name
        self.store = store
        self.settings = settings
        self.clock = clock
        self._rng = random.Random(f"{settings.dex_seed}:venue:{name}")
        self._rng_lock = threading.Lock()

    def quote(self, token_in: Token, token_out: Token, amount_in: int) -> Quote:
        listed = catalogue.pool_for(self.name, token_in, token_out)
        if listed is None:
            raise NoRoute(f"{self.name} lists no {token_in.symbol}/{token_out.symbol} pool")
        spec, swap_for_y = listed
        started_ms = self.clock.now_ms()
        with self._rng_lock:
            delay_ms = self.settings.dex_quote_latency.sample_ms(self._rng)
        self.clock.sleep_ms(delay_ms)
        now_ms = self.clock.now_ms()
        state = self.store.market_view(spec.pool_id, now_ms)
        outcome = pools.swap(state, amount_in, swap_for_y, now_ms // 1000)
        return Quote(
            dex=self.name,
            pool_id=spec.pool_id,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=outcome.amount_out,
            fee_atoms=outcome.fee,
            fee_bps=outcome.fee_bps.quantize(Decimal("0.01")),
            price_impact_bps=_bps(outcome.price_impact_bps),
            slot=slot_at(now_ms),
            latency_ms=self.clock.now_ms() - started_ms,
            curve=pools.output_function(state, swap_for_y, now_ms // 1000),
        )


def _bps(value: Fraction) -> Decimal:
    """A bps figure for display, to 0.01 bps, from the exact fraction."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"))
