"""Response schemas for orders: an order, its events, the answers to a submission and a page.
Dumped from what the service loaded; a schema does no I/O."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from order_engine.domain.time import format_timestamp
from order_engine.domain.triggers import shown_level
from order_engine.models import OrderStatus, OrderType
from order_engine.schemas.order import ExactAmount
from order_engine.schemas.triggers import shown_price, trailing_peak


class EventSchema(Schema):
    orderId = fields.String()
    seq = fields.Integer()
    status = fields.String(validate=validate.OneOf([s.value for s in OrderStatus]))
    at = fields.String(metadata={"description": "ISO 8601 UTC, millisecond precision"})
    attempt = fields.Integer()
    data = fields.Dict()


class OrderSchema(Schema):
    """An order as clients see it."""

    orderId = fields.String(attribute="id")
    type = fields.String()
    status = fields.String()
    tokenIn = fields.String(attribute="token_in")
    tokenOut = fields.String(attribute="token_out")
    amount = ExactAmount(attribute="amount_in")
    slippageBps = fields.Integer(attribute="slippage_bps")
    clientOrderId = fields.String(attribute="client_order_id", allow_none=True)
    attempts = fields.Integer()
    dex = fields.String(allow_none=True)
    quotedAmountOut = ExactAmount(attribute="quoted_amount_out", allow_none=True)
    minAmountOut = ExactAmount(attribute="min_amount_out", allow_none=True)
    amountOut = ExactAmount(attribute="amount_out", allow_none=True)
    executedPrice = ExactAmount(attribute="executed_price", allow_none=True)
    txHash = fields.String(attribute="tx_hash", allow_none=True)
    limitPrice = ExactAmount(attribute="limit_price", allow_none=True)
    maxPrice = ExactAmount(attribute="max_price", allow_none=True)
    expiresAt = fields.Method("dump_expires", allow_none=True)
    triggerPrice = fields.Method("dump_trigger_price", allow_none=True)
    takeProfit = fields.Method("dump_take_profit", allow_none=True)
    stopLoss = fields.Method("dump_stop_loss", allow_none=True)
    leg = fields.Method(
        "dump_leg",
        allow_none=True,
        metadata={"description": "oco, once triggered: the leg that met the market"},
    )
    trailBps = fields.Integer(attribute="trail_bps", allow_none=True)
    activationPrice = ExactAmount(attribute="activation_price", allow_none=True)
    peakPrice = fields.Method(
        "dump_peak",
        allow_none=True,
        metadata={"description": "trailing_stop: the highest quote since it started"},
    )
    triggerLevel = fields.Method(
        "dump_trigger_level",
        allow_none=True,
        metadata={"description": "trailing_stop: it fires once its quote falls to this"},
    )
    waiting = fields.Boolean(
        metadata={"description": "any but market: not triggered yet; twap: its slices still run"}
    )
    slices = fields.Integer(allow_none=True, metadata={"description": "twap: its slices"})
    intervalS = fields.Integer(
        attribute="interval_s", allow_none=True, metadata={"description": "twap: seconds apart"}
    )
    parentId = fields.String(
        attribute="parent_id", allow_none=True, metadata={"description": "a twap slice's parent"}
    )
    sliceIndex = fields.Integer(
        attribute="slice_index", allow_none=True, metadata={"description": "a twap slice's index"}
    )
    priorityFee = fields.Method(
        "dump_priority_fee",
        metadata={"description": '"auto", or {"microLamportsPerCu": N} as submitted'},
    )
    maxFeeLamports = fields.Integer(
        attribute="max_fee_lamports",
        allow_none=True,
        metadata={"description": "its cap on priority fee plus tip (null: MAX_FEE_LAMPORTS)"},
    )
    mevProtection = fields.Boolean(
        attribute="mev_protection",
        allow_none=True,
        metadata={"description": "as submitted (null: MEV_PROTECTION)"},
    )
    fees = fields.Dict(
        allow_none=True,
        metadata={
            "description": "its latest transaction's {baseLamports, priorityLamports, "
            "tipLamports, microLamportsPerCu, computeUnitLimit, computeUnitsConsumed}: once "
            "settled as getTransaction says (meta.fee = base + priority), before that what it "
            "pays if it lands"
        },
    )
    landing = fields.Dict(
        allow_none=True,
        metadata={"description": "{via: rpc | bundle, sentSlot, landedSlot, versions}"},
    )
    error = fields.Method("dump_error", allow_none=True)
    createdAt = fields.Method("dump_created")
    updatedAt = fields.Method("dump_updated")

    def dump_priority_fee(self, order: Any) -> str | dict[str, int]:
        price = order.priority_fee_micro_lamports
        return "auto" if price is None else {"microLamportsPerCu": int(price)}

    def dump_error(self, order: Any) -> dict[str, Any] | None:
        if not order.failure_code:
            return None
        return {
            "code": order.failure_code,
            "message": order.failure_reason,
            "retryable": bool(order.failure_retryable),
        }

    def dump_trigger_price(self, order: Any) -> str | None:
        return shown_price(order.stop_price) if order.type == OrderType.STOP.value else None

    def dump_take_profit(self, order: Any) -> dict[str, str] | None:
        if order.type != OrderType.OCO.value:
            return None
        return {"limitPrice": shown_price(order.limit_price)}

    def dump_stop_loss(self, order: Any) -> dict[str, str] | None:
        if order.type != OrderType.OCO.value:
            return None
        return {"triggerPrice": shown_price(order.stop_price)}

    def dump_leg(self, order: Any) -> str | None:
        # A bracket the executor put back to waiting keeps its last leg until the next trigger.
        return None if order.waiting else order.trigger_leg

    def dump_peak(self, order: Any) -> str | None:
        peak = trailing_peak(order)
        return None if peak is None else shown_price(peak)

    def dump_trigger_level(self, order: Any) -> str | None:
        peak = trailing_peak(order)
        return None if peak is None else shown_price(shown_level(peak, order.trail_bps))

    def dump_expires(self, order: Any) -> str | None:
        return None if order.expires_at is None else format_timestamp(order.expires_at)

    def dump_created(self, order: Any) -> str:
        return format_timestamp(order.created_at)

    def dump_updated(self, order: Any) -> str:
        return format_timestamp(order.updated_at)


class OrderWithEventsSchema(OrderSchema):
    """GET /api/orders/<id>: the order and its whole event history (documentation only: the
    view appends the events itself)."""

    events = fields.List(fields.Nested(EventSchema))
    twap = fields.Nested(
        "TwapSchema",
        allow_none=True,
        metadata={"description": "a TWAP parent's schedule, children and fills so far"},
    )


class OrderLinksSchema(Schema):
    self_ = fields.String(data_key="self", metadata={"description": "GET: the order"})
    ws = fields.String(metadata={"description": "WebSocket: its events"})


class OrderAcceptedSchema(Schema):
    """202 to a submission (documentation only: the view builds it, on the hot path)."""

    orderId = fields.UUID()
    status = fields.String(
        validate=validate.OneOf([s.value for s in OrderStatus]),
        metadata={"description": "pending; a replay (same Idempotency-Key): its status now"},
    )
    links = fields.Nested(OrderLinksSchema)


class PageLinksSchema(Schema):
    next = fields.String(metadata={"description": "the next page, with the same filters"})


class OrderPageSchema(Schema):
    """GET /api/orders (documentation only: the view builds it)."""

    orders = fields.List(fields.Nested(OrderSchema))
    nextCursor = fields.String(allow_none=True)
    links = fields.Nested(PageLinksSchema)  # only when there is a next page
