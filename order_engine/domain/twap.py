"""TWAP orders: a parent order run as `slices` child market orders, one per interval. Pure.

The parent's amount is split in atoms of its tokenIn so that the slices sum to it exactly: the
first `total % slices` slices carry one atom more than the others. Slice k is due at the
parent's acceptance plus k × intervalS (k from 0: the first slice at once). The parent never
swaps itself: it waits (`pending`, `waiting`) while its slices run, reports their progress in
`pending` events, and ends `confirmed` once every slice filled, `failed` with what is left
otherwise, or `cancelled`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from order_engine.domain.errors import ExecutionError
from order_engine.domain.status import OrderStatus

SLICES_MAX = 1000
INTERVAL_S_MAX = 86_400

# A parent's own state machine: it waits while its slices run (each progress report a `pending`
# event), then ends. Its `confirmed` is the sum of its children's fills, not a swap of its own,
# so it goes there from `pending`, which no swap may (`status.TRANSITIONS`).
PARENT_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.FAILED, OrderStatus.CANCELLED}
    ),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.FAILED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class TwapPartiallyFilled(ExecutionError):
    """Some slices filled, others did not (held back by the limit, failed or cancelled)."""

    code, retryable = "TWAP_PARTIALLY_FILLED", False


class TwapNotFilled(ExecutionError):
    """No slice filled."""

    code, retryable = "TWAP_NOT_FILLED", False


def slice_atoms(total: int, slices: int) -> list[int]:
    """`total` atoms in `slices` amounts summing to it exactly, none empty, the larger first."""
    if slices < 1 or total < slices:
        raise ValueError(f"{total} atoms cannot make {slices} slices of at least one atom")
    base, extra = divmod(total, slices)
    return [base + 1 if index < extra else base for index in range(slices)]


def due_at(accepted: datetime, index: int, interval_s: int) -> datetime:
    """When slice `index` is due: the parent's acceptance plus index × interval."""
    return accepted + timedelta(seconds=index * interval_s)


def due_through(accepted: datetime, moment: datetime, interval_s: int, slices: int) -> int:
    """The last slice index due at `moment` (-1 before the first), at most `slices` - 1."""
    if moment < accepted:
        return -1
    elapsed = int((moment - accepted).total_seconds() // interval_s)
    return min(elapsed, slices - 1)


def ends_at(accepted: datetime, slices: int, interval_s: int) -> datetime:
    """One interval after the last slice is due: a child of a parent with a limit that waits
    for its price (the executor re-arms one the market left) expires then."""
    return due_at(accepted, slices, interval_s)


@dataclass(frozen=True)
class ChildFill:
    """What one child order came to: its status and, once confirmed, its fill."""

    slice_index: int
    status: str
    amount_in: Decimal
    amount_out: Decimal | None


@dataclass(frozen=True)
class Progress:
    """A parent's slices so far: what filled (tokenIn sold, tokenOut bought), how many slices
    finished, and what remains of its amount."""

    amount: Decimal
    slices: int
    filled_in: Decimal = Decimal(0)
    filled_out: Decimal = Decimal(0)
    started: int = 0
    finished: int = 0
    filled: int = 0
    failed: int = 0
    cancelled: int = 0

    @classmethod
    def of(cls, amount: Decimal, slices: int, children: Iterable[ChildFill]) -> Progress:
        filled_in = filled_out = Decimal(0)
        counts = {"started": 0, "finished": 0, "filled": 0, "failed": 0, "cancelled": 0}
        for child in children:
            counts["started"] += 1
            status = OrderStatus(child.status)
            if not status.is_terminal:
                continue
            counts["finished"] += 1
            counts[{"confirmed": "filled"}.get(status.value, status.value)] += 1
            if status is OrderStatus.CONFIRMED:
                filled_in += child.amount_in
                filled_out += child.amount_out or Decimal(0)
        return cls(amount, slices, filled_in, filled_out, **counts)

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled_in

    @property
    def average_price(self) -> Decimal | None:
        """tokenOut per tokenIn over every fill, 12 decimals rounded down (as a fill's price)."""
        if not self.filled_in:
            return None
        return (self.filled_out / self.filled_in).quantize(Decimal("1e-12"), rounding=ROUND_DOWN)

    def outcome(self, held_back: int) -> tuple[OrderStatus, ExecutionError | None]:
        """How a parent ends once no slice is left to start and every child has finished."""
        if self.filled == self.slices and self.remaining == 0:
            return OrderStatus.CONFIRMED, None
        unfilled = self.slices - self.filled
        why = [
            f"{count} {what}"
            for count, what in (
                (held_back, "held back by its limitPrice"),
                (self.failed, "failed"),
                (self.cancelled, "cancelled"),
            )
            if count
        ]
        message = (
            f"{self.filled} of {self.slices} slices filled ({unfilled} not: "
            f"{', '.join(why) or 'not started'}); {_plain(self.remaining)} left"
        )
        if self.filled:
            return OrderStatus.FAILED, TwapPartiallyFilled(message)
        return OrderStatus.FAILED, TwapNotFilled(message)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"
