"""A TWAP parent as `GET /api/orders/<id>` shows it: its schedule, its children and what they
filled so far (computed from the children's rows when read, so it is never behind them)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from marshmallow import Schema, fields

from order_engine.domain import twap
from order_engine.domain.status import OrderStatus
from order_engine.domain.time import format_timestamp
from order_engine.schemas.order import ExactAmount


@dataclass(frozen=True)
class TwapView:
    """A parent order and its children, for `TwapSchema`."""

    order: Any
    children: Any

    @cached_property
    def progress(self) -> twap.Progress:
        return twap.Progress.of(
            self.order.amount_in,
            self.order.slices,
            (
                twap.ChildFill(c.slice_index, c.status, c.amount_in, c.amount_out)
                for c in self.children
            ),
        )


class TwapChildSchema(Schema):
    """One slice: a child market order."""

    orderId = fields.String(attribute="id")
    sliceIndex = fields.Integer(attribute="slice_index")
    status = fields.String()
    amount = ExactAmount(attribute="amount_in")
    amountOut = ExactAmount(attribute="amount_out", allow_none=True)
    executedPrice = ExactAmount(attribute="executed_price", allow_none=True)
    dex = fields.String(allow_none=True)
    txHash = fields.String(attribute="tx_hash", allow_none=True)
    errorCode = fields.String(attribute="failure_code", allow_none=True)
    createdAt = fields.Method("dump_created")

    def dump_created(self, order: Any) -> str:
        return format_timestamp(order.created_at)


class FilledSchema(Schema):
    amountIn = fields.String(metadata={"description": "tokenIn sold by the filled slices"})
    amountOut = fields.String(metadata={"description": "tokenOut they bought"})


class TwapSchema(Schema):
    """`twap` of a TWAP parent's GET (documentation and dump)."""

    slices = fields.Method("dump_slices")
    intervalS = fields.Method("dump_interval")
    nextSliceAt = fields.Method(
        "dump_next", allow_none=True, metadata={"description": "null once none is left"}
    )
    slicesStarted = fields.Method("dump_started")
    slicesFinished = fields.Method("dump_finished")
    slicesFilled = fields.Method("dump_filled_count")
    filled = fields.Method("dump_filled")
    averagePrice = fields.Method(
        "dump_price", allow_none=True, metadata={"description": "tokenOut per tokenIn, all fills"}
    )
    remaining = fields.Method("dump_remaining", metadata={"description": "tokenIn not sold"})
    children = fields.Method("dump_children")

    def dump_slices(self, view: TwapView) -> int:
        return int(view.order.slices)

    def dump_interval(self, view: TwapView) -> int:
        return int(view.order.interval_s)

    def dump_next(self, view: TwapView) -> str | None:
        order = view.order
        upcoming = order.next_slice or 0
        if order.status != OrderStatus.PENDING.value or upcoming >= order.slices:
            return None
        return format_timestamp(twap.due_at(order.created_at, upcoming, order.interval_s))

    def dump_started(self, view: TwapView) -> int:
        return view.progress.started

    def dump_finished(self, view: TwapView) -> int:
        return view.progress.finished

    def dump_filled_count(self, view: TwapView) -> int:
        return view.progress.filled

    def dump_filled(self, view: TwapView) -> dict[str, str]:
        progress = view.progress
        return {"amountIn": _plain(progress.filled_in), "amountOut": _plain(progress.filled_out)}

    def dump_price(self, view: TwapView) -> str | None:
        price = view.progress.average_price
        return None if price is None else _plain(price)

    def dump_remaining(self, view: TwapView) -> str:
        return _plain(view.progress.remaining)

    def dump_children(self, view: TwapView) -> list[dict[str, Any]]:
        return TwapChildSchema(many=True).dump(view.children)


def _plain(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f") if value else "0"
