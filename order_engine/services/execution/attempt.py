"""One attempt at an order, as the executor holds it, and what an attempt can end in.

An attempt comes to its order one of three ways (`Entry`): from intake's copy of a new order,
by claiming a waiting order, or by taking over one whose executor's lease expired. The entry
decides what its first transition must check, and what a failure before anything was built
means; everything after that is the same for all three.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from order_engine.config import Settings
from order_engine.domain.errors import DeliveriesExhausted, ExecutionError
from order_engine.domain.status import OrderStatus
from order_engine.domain.tokens import Token
from order_engine.infra import metrics
from order_engine.models import Order

SLOT_S = 0.4


class Outcome(enum.StrEnum):
    """What one delivery of `execute_order` did."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not ours to run: claimed elsewhere, finished or unknown
    LEASE_LOST = "lease-lost"  # another executor took the order over meanwhile
    PARKED = "parked"  # a poison order waits for its last transaction's blockhash to expire
    REARMED = "rearmed"  # a limit/sniper order whose price moved away waits again


class RetryLater(Exception):
    """The attempt failed in a retryable way; run the next one after `countdown_s`."""

    def __init__(self, error: ExecutionError, countdown_s: float) -> None:
        super().__init__(f"{error.code}: {error.message}; next attempt in {countdown_s:.2f}s")
        self.error = error
        self.countdown_s = countdown_s


class LeaseLost(ExecutionError):
    """Another executor owns the order now; this one must stop without side effects."""

    code, retryable = "LEASE_LOST", False


class NotClaimed(Exception):
    """A fresh order's claiming transition matched nothing: it is not fresh any more."""


class Entry(enum.Enum):
    """How an attempt came to hold its order, which decides what its first transition checks."""

    # Intake's copy of a new market order, the row not read: its first transition also claims
    # it, if it is still fresh (NotClaimed, nothing written, if not).
    FRESH = "fresh"
    # Claimed by `OrderRepository.claim`: a `pending` order, or one the trigger engine routed.
    CLAIMED = "claimed"
    # Taken over mid-flight from an executor whose lease expired: that attempt is finished.
    TAKEN_OVER = "taken over"


@dataclass
class Attempt:
    """One delivery's attempt at an order: the order as its claim returned it (or as intake's
    copy says it is), its tokens and amount in atoms, and the status this executor has moved
    it to so far."""

    order: Order
    executor: str
    token_in: Token
    token_out: Token
    amount_in: int
    status: OrderStatus
    # How it came to hold the order; FRESH becomes CLAIMED once its first transition claimed it.
    entry: Entry
    # The blockhash expiry of the order's latest transaction (this attempt's once built), and
    # when that is on this process's monotonic clock (known only for a transaction built here).
    last_valid_height: int | None = None
    expires_at: float | None = None
    # The latest version's plan (how it was sent, what it bids: `landing.Plan`), the minimum it
    # was built with (atoms), and what the chain says it paid once it is settled (`fees` and
    # `landing`, recorded with the order's end).
    plan: Any = None
    shape: Any = None  # its compute units' shape (`landing.UnitTable`), when built here
    signed: str | None = None  # its signed bytes (base64), once known to this attempt
    minimum: int | None = None
    report: dict[str, Any] | None = None
    # Times the statuses this executor moves the order through (metrics only).
    clock: metrics.StatusClock = field(default_factory=metrics.StatusClock)

    @property
    def taken_over(self) -> bool:
        return self.entry is Entry.TAKEN_OVER

    def quoted_atoms(self) -> int:
        """The quote the order's latest transaction was built on, in atoms (0 if none)."""
        quoted = self.order.quoted_amount_out
        return self.token_out.to_atoms(quoted) if quoted is not None else 0


def check_delivery_budget(attempt: Attempt, settings: Settings) -> None:
    """A poison order keeps dying with its worker: stop it so the queue keeps flowing.

    Only called once nothing of the order can still land."""
    if attempt.order.deliveries > settings.order_max_deliveries:
        raise DeliveriesExhausted(
            f"handed to a worker {attempt.order.deliveries} times without finishing"
        )


def observe_pending(order: Order) -> None:
    """How long the order waited for a worker since it became runnable: its acceptance (or
    its trigger, for a limit or sniper order) on the first attempt, the scheduled time of the
    retry on later ones."""
    runnable_since = (
        order.next_attempt_at
        if order.attempts > 1 and order.next_attempt_at is not None
        else (order.triggered_at or order.created_at)
    )
    if runnable_since is not None:
        metrics.time_in_status("pending", (datetime.now(UTC) - runnable_since).total_seconds())


def slots(count: int) -> timedelta:
    """How long `count` slots last (Solana's 400 ms target slot time)."""
    return timedelta(seconds=count * SLOT_S)
