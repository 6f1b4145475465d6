"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from order_engine.domain.status import (
    HAPPY_PATH,
    IN_FLIGHT,
    TERMINAL_STATUSES,
    TRANSITIONS,
    OrderStatus,
)
from order_engine.models.account import DEFAULT_ACCOUNT_ID, SCOPES, Account, ApiKey
from order_engine.models.base import Base
from order_engine.models.order import Order, OrderEvent, OrderType, TrailingPeak

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "SCOPES",
    "Account",
    "ApiKey",
    "HAPPY_PATH",
    "IN_FLIGHT",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Base",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "OrderType",
    "TrailingPeak",
]
