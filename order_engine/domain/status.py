"""An order's statuses and the state machine between them: pure, so that every layer (the
models' check constraints, the repositories' compare-and-set, the executor) names them alike."""

from __future__ import annotations

import enum


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({OrderStatus.CONFIRMED, OrderStatus.FAILED, OrderStatus.CANCELLED})
# Unfinished: an executor (or the trigger engine, for a waiting order) may still move it.
IN_FLIGHT = (
    OrderStatus.PENDING,
    OrderStatus.ROUTING,
    OrderStatus.BUILDING,
    OrderStatus.SUBMITTED,
)
# The way an attempt that succeeds goes, one transition per step.
HAPPY_PATH = (*IN_FLIGHT, OrderStatus.CONFIRMED)

# The state machine, in one place (docs/design.md): forward along the happy path; back to
# `pending` when an attempt fails and another is scheduled; to `failed` from anything
# unfinished; to `cancelled` only before a swap transaction is built. Terminal statuses have no
# way out. `OrderRepository.transition` refuses anything else; the invariant checker of the
# fault suite holds every recorded history to it.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.ROUTING, OrderStatus.PENDING, OrderStatus.FAILED, OrderStatus.CANCELLED}
    ),
    OrderStatus.ROUTING: frozenset(
        {OrderStatus.BUILDING, OrderStatus.PENDING, OrderStatus.FAILED, OrderStatus.CANCELLED}
    ),
    OrderStatus.BUILDING: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.PENDING, OrderStatus.FAILED}
    ),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.CONFIRMED, OrderStatus.PENDING, OrderStatus.FAILED}
    ),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.FAILED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}
