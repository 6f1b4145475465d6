"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from order_engine.models.base import Base
from order_engine.models.order import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
)

__all__ = [
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Base",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "OrderType",
]
