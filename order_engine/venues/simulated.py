"""Simulated Raydium and Meteora venues over pool state shared through PostgreSQL.

Quotes read the pool's current state and run the venue's exact integer math; swaps are applied
by the simulated chain (`order_engine.chain`) when a transaction lands, under a row lock, so
every worker process sees one consistent market.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert

from order_engine.config import Settings
from order_engine.models import SimPool
from order_engine.tokens import Token
from order_engine.venues import catalogue
from order_engine.venues.base import Quote
from order_engine.venues.errors import AmountTooSmall, NoLiquidity, NoRoute
from order_engine.venues.math import InsufficientLiquidity, VenueMathError, ZeroTradingTokens
from order_engine.venues.math.cpmm import ConstantProductPool

BPS = 10_000


@dataclass(frozen=True)
class SwapOutcome:
    amount_out: int
    fee: int
    price_impact_bps: Fraction
    new_state: dict[str, Any]


def simulate_swap(state: dict[str, Any], amount_in: int, swap_for_y: bool) -> SwapOutcome:
    """Run an ExactIn swap on a stored pool state; pure."""
    pool = _cp_pool(state)
    try:
        result = pool.swap_exact_in(amount_in, swap_for_y)
    except ZeroTradingTokens as exc:
        raise AmountTooSmall(str(exc)) from exc
    except InsufficientLiquidity as exc:
        raise NoLiquidity(str(exc)) from exc
    except VenueMathError as exc:
        raise NoLiquidity(str(exc)) from exc
    new_state = {**state, **_cp_state(result.pool)}  # keep bookkeeping keys (flow clock)
    return SwapOutcome(result.amount_out, result.fee, result.price_impact_bps, new_state)


def _cp_pool(state: dict[str, Any]) -> ConstantProductPool:
    return ConstantProductPool(
        int(state["reserve_x"]),
        int(state["reserve_y"]),
        int(state["fee_numerator"]),
        int(state["fee_denominator"]),
    )


def _cp_state(pool: ConstantProductPool) -> dict[str, Any]:
    return {
        "kind": "cpmm",
        "reserve_x": str(pool.reserve_x),
        "reserve_y": str(pool.reserve_y),
        "fee_numerator": pool.fee_numerator,
        "fee_denominator": pool.fee_denominator,
    }


def fee_bps(state: dict[str, Any]) -> Decimal:
    return Decimal(int(state["fee_numerator"]) * BPS) / Decimal(int(state["fee_denominator"]))


class PoolStore:
    """Reads and writes pool rows; seeds the catalogue on first use in each process."""

    _seeded: set[tuple[str, int]] = set()
    _seed_lock = threading.Lock()

    def __init__(self, engine: Engine, seed: int) -> None:
        self.engine = engine
        self.seed = seed

    def ensure_seeded(self) -> None:
        key = (str(self.engine.url), self.seed)
        if key in self._seeded:
            return
        with self._seed_lock, self.engine.begin() as conn:
            rows = [
                {
                    "pool_id": spec.pool_id,
                    "venue": spec.venue,
                    "mint_x": spec.token_x.mint,
                    "mint_y": spec.token_y.mint,
                    "state": spec.initial_state(self.seed),
                }
                for spec in catalogue.POOLS
            ]
            conn.execute(insert(SimPool).values(rows).on_conflict_do_nothing())
            self._seeded.add(key)

    def state(self, pool_id: str) -> dict[str, Any]:
        self.ensure_seeded()
        with self.engine.connect() as conn:
            return conn.execute(
                select(SimPool.state).where(SimPool.pool_id == pool_id)
            ).scalar_one()

    def lock(self, conn: Connection, pool_id: str) -> dict[str, Any]:
        """The pool's state, row-locked until `conn`'s transaction ends."""
        self.ensure_seeded()
        query = select(SimPool.state).where(SimPool.pool_id == pool_id).with_for_update()
        return conn.execute(query).scalar_one()

    def save(self, conn: Connection, pool_id: str, state: dict[str, Any]) -> None:
        from sqlalchemy import func, update

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
        started = time.monotonic()
        with self._rng_lock:
            delay_ms = self.settings.dex_quote_latency.sample_ms(self._rng)
        time.sleep(delay_ms / 1000)
        state = self.store.state(spec.pool_id)
        outcome = simulate_swap(state, amount_in, swap_for_y)
        return Quote(
            dex=self.name,
            pool_id=spec.pool_id,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=outcome.amount_out,
            fee_atoms=outcome.fee,
            fee_bps=fee_bps(state),
            price_impact_bps=_bps(outcome.price_impact_bps),
            slot=self.clock.current_slot(),
            latency_ms=round((time.monotonic() - started) * 1000),
        )


def _bps(value: Fraction) -> Decimal:
    """A bps figure for display, to 0.01 bps, rounded half-even from the exact fraction."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"))
