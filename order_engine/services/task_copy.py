"""The copy of a new market order that its first execution task carries.

With it the executor routes and builds before it touches the order's row, and claims the order
in the same statement that records `routing` (`ExecutionService.execute`): one statement and one
commit per order fewer than claiming first and routing after. The copy holds only what never
changes after intake, so it cannot go stale; whether the order is still fresh (never claimed,
not cancelled) is the claiming statement's to check, not the copy's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from order_engine.domain.status import OrderStatus
from order_engine.models import Order, OrderType


def task_copy(order: Order) -> dict[str, Any] | None:
    """The copy of an order just accepted; None for one that waits for a trigger or is not a
    market order (their executions read the row first, as every later attempt does)."""
    if order.type != OrderType.MARKET.value or order.waiting:
        return None
    return {
        "accountId": str(order.account_id),
        "tokenIn": order.token_in,
        "tokenOut": order.token_out,
        "amount": str(order.amount_in),
        "slippageBps": order.slippage_bps,
        "clientOrderId": order.client_order_id,
        "createdAt": order.created_at.isoformat(),
        "landing": [
            order.priority_fee_micro_lamports,
            order.max_fee_lamports,
            order.mev_protection,
        ],
    }


def as_claimed(order_id: uuid.UUID, copy: dict[str, Any]) -> Order | None:
    """The row a claim of this still-fresh order returns: what intake wrote, with its first
    attempt and delivery counted. None if `copy` is not a copy of this module's making (a
    message from an older or newer engine): the executor then reads the row."""
    try:
        price, cap, protected = copy.get("landing") or (None, None, None)
        return Order(
            id=order_id,
            account_id=uuid.UUID(copy["accountId"]),
            type=OrderType.MARKET.value,
            status=OrderStatus.PENDING.value,
            token_in=str(copy["tokenIn"]),
            token_out=str(copy["tokenOut"]),
            amount_in=Decimal(copy["amount"]),
            slippage_bps=int(copy["slippageBps"]),
            client_order_id=copy["clientOrderId"],
            created_at=datetime.fromisoformat(copy["createdAt"]),
            last_seq=1,
            attempts=1,
            deliveries=1,
            waiting=False,
            priority_fee_micro_lamports=None if price is None else int(price),
            max_fee_lamports=None if cap is None else int(cap),
            mev_protection=None if protected is None else bool(protected),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return None
