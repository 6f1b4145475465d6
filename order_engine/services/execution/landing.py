"""What a swap bids and how it is sent (its `Plan`), and what the order reports it paid.

An order's own say (`priorityFee`, `maxFeeLamports`, `mevProtection`, stored at intake; the
settings for an order that said nothing) decides the plan with what the chain says now:

- the price per CU: the order's fixed one, or (`auto`) the fee oracle's percentile of what
  recent slots' transactions writing the same pool accounts paid, at least the floor;
- the compute unit limit: what the swap's simulation consumed, times the margin, rounded up;
- the tip of a protected order: the block engine's tip floor percentile, at least 1,000;
- a later version of the same order (the earlier one can no longer land) bids at least the
  escalation percentage of the earlier version's price (`auto`) and tip;
- and the priority fee plus the tip never exceed the order's cap: both are cut to fit.

The report (`fees`, `landing`) is what `getTransaction` says of the order's latest transaction:
`meta.fee` is `baseLamports + priorityLamports` (a tip is a transfer, not a fee), its
`meta.computeUnitsConsumed` and `slot`; for a transaction that never landed, nothing charged.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from order_engine.chain.block_engine import MIN_TIP_LAMPORTS
from order_engine.chain.programs import LAMPORTS_PER_SIGNATURE, MICRO_LAMPORTS_PER_LAMPORT
from order_engine.chain.statuses import TransactionBalances
from order_engine.config import Settings
from order_engine.models import Order

BUNDLE, RPC = "bundle", "rpc"


@dataclass(frozen=True)
class Options:
    """The order's own say, with the settings' defaults for what it left out."""

    fixed_price: int | None  # µlamports per CU; None: auto
    max_fee: int  # lamports of priority fee plus tip, at most
    protected: bool

    @classmethod
    def of(cls, order: Order, settings: Settings) -> Options:
        cap = order.max_fee_lamports
        protected = order.mev_protection
        return cls(
            order.priority_fee_micro_lamports,
            settings.max_fee_lamports if cap is None else int(cap),
            settings.mev_protection if protected is None else bool(protected),
        )


@dataclass(frozen=True)
class Plan:
    """One version of an order's swap: how it is sent, what it bids, its limit and its tip."""

    via: str  # BUNDLE | RPC
    price: int  # µlamports per CU
    limit: int  # compute units
    tip: int  # lamports to the tip account (0 for RPC)
    versions: int  # versions of the order's swap signed so far, this one included
    sent_slot: int

    @property
    def priority_lamports(self) -> int:
        return priority_lamports(self.limit, self.price)

    def fees(self) -> dict[str, Any]:
        """The `fees` this version pays if it lands (what the order shows while in flight)."""
        return fees_report(self, LAMPORTS_PER_SIGNATURE, self.priority_lamports, self.tip, None)

    def landing(self) -> dict[str, Any]:
        return landing_report(self.via, self.sent_slot, None, self.versions)


def priority_lamports(limit: int, price: int) -> int:
    """`ceil(limit × price / 10^6)` (Solana's docs, "Transaction Fees": the prioritization fee
    is the requested limit times the price, not what was consumed)."""
    return -(-limit * price // MICRO_LAMPORTS_PER_LAMPORT)


def compute_limit(units_consumed: int, margin_pct: int) -> int:
    """The limit to sign: what the simulation consumed times the margin, rounded up."""
    return max(math.ceil(units_consumed * margin_pct / 100), 1)


def escalated(value: int, previous: int | None, pct: int) -> int:
    """At least `pct` % of `previous` (rounded up), when there was a previous version."""
    if not previous:
        return value
    return max(value, -(-previous * pct // 100))


def fit_to_cap(limit: int, price: int, tip: int, cap: int) -> tuple[int, int]:
    """(price, tip) cut so that `ceil(limit × price / 10^6) + tip <= cap`: both shrink in
    proportion, a tip never below the block engine's minimum (when there is one)."""
    total = priority_lamports(limit, price) + tip
    if total <= cap:
        return price, tip
    if tip:
        tip = min(max(tip * cap // total, MIN_TIP_LAMPORTS), tip)
    room = max(cap - tip, 0)
    return min(price, room * MICRO_LAMPORTS_PER_LAMPORT // limit), tip


def previous_version(order: Order) -> tuple[int, int | None, int | None]:
    """(versions signed, the latest's price per CU, its tip) from the order's columns."""
    landing, fees = order.landing or {}, order.fees or {}
    return (
        int(landing.get("versions") or 0),
        fees.get("microLamportsPerCu"),
        fees.get("tipLamports"),
    )


def fees_report(
    plan: Plan, base: int, priority: int, tip: int, consumed: int | None
) -> dict[str, Any]:
    return {
        "baseLamports": base,
        "priorityLamports": priority,
        "tipLamports": tip,
        "microLamportsPerCu": plan.price,
        "computeUnitLimit": plan.limit,
        "computeUnitsConsumed": consumed,
    }


def landing_report(
    via: str, sent_slot: int | None, landed_slot: int | None, versions: int
) -> dict[str, Any]:
    return {"via": via, "sentSlot": sent_slot, "landedSlot": landed_slot, "versions": versions}


def plan_of(order: Order) -> Plan | None:
    """The plan of the order's latest version, from its columns (None before any)."""
    fees, landing = order.fees, order.landing
    if not fees or not landing:
        return None
    return Plan(
        str(landing.get("via") or RPC),
        int(fees.get("microLamportsPerCu") or 0),
        int(fees.get("computeUnitLimit") or 0),
        int(fees.get("tipLamports") or 0),
        int(landing.get("versions") or 1),
        int(landing.get("sentSlot") or 0),
    )


def report(plan: Plan, balances: TransactionBalances | None) -> dict[str, Any]:
    """The order's `fees` and `landing` as the chain says: from `getTransaction` (`balances`)
    when its latest version landed, else nothing charged."""
    if balances is None:
        fees = fees_report(plan, 0, 0, 0, None)
        landed = None
    else:
        priority = plan.priority_lamports
        tip = plan.tip if balances.err is None else 0
        fees = fees_report(plan, balances.fee - priority, priority, tip, balances.units_consumed)
        landed = balances.slot
    landing = landing_report(plan.via, plan.sent_slot, landed, plan.versions)
    return {"fees": fees, "landing": landing}


class UnitTable:
    """What landed swaps of each shape consumed (`meta.computeUnitsConsumed`, which settling
    already fetches), per process: a swap of a shape seen before is sized from it with no
    simulation (one round trip and ~0.4 ms of CPU fewer); an unseen shape is simulated, and
    its simulation is the first entry. The latest figure wins (a first swap into a token pays
    for creating its account once, the next ones do not). Bounded: the oldest shapes go."""

    def __init__(self, size: int = 4096) -> None:
        self._units: dict[Hashable, int] = {}
        self._size = size
        self._lock = threading.Lock()
        self._simulating: dict[Hashable, threading.Lock] = {}

    def get(self, shape: Hashable) -> int | None:
        return self._units.get(shape)

    def simulation_of(self, shape: Hashable) -> threading.Lock:
        """The lock one simulation of a shape not seen yet is run under: builds of the same
        new shape that arrive meanwhile (a burst's first hundreds of orders, before any has
        landed) wait for its figure instead of each simulating."""
        with self._lock:
            return self._simulating.setdefault(shape, threading.Lock())

    def learn(self, shape: Hashable, units: int | None) -> None:
        if not units:
            return
        with self._lock:
            self._simulating.pop(shape, None)
            self._units.pop(shape, None)
            self._units[shape] = units
            while len(self._units) > self._size:
                del self._units[next(iter(self._units))]

    def forget(self, shape: Hashable) -> None:
        with self._lock:
            self._units.pop(shape, None)
