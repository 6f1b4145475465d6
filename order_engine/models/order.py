"""Orders and their append-only lifecycle events.

`orders` holds one row per order with its current status; `order_events` holds every status
change, numbered per order by `seq` (contiguous from 1). The row's `last_seq` is bumped in the
same compare-and-set UPDATE that changes the status, so two writers can never mint the same seq.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, column_property, mapped_column

from order_engine.domain.status import OrderStatus
from order_engine.models.account import DEFAULT_ACCOUNT_ID
from order_engine.models.base import Base

# numeric(38, 18): wide enough for any SPL token amount in UI units (u64 atoms / 10^decimals).
Amount = Numeric(38, 18)


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    SNIPER = "sniper"
    STOP = "stop"
    OCO = "oco"
    TRAILING_STOP = "trailing_stop"
    TWAP = "twap"


def _in_list(column: str, values: type[enum.Enum]) -> str:
    quoted = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({quoted})"


def _positive(column: str) -> str:
    # PostgreSQL sorts NaN above every number, so `> 0` alone would accept it.
    return f"{column} > 0 AND {column} <> 'NaN'"


def _non_negative_or_null(column: str) -> str:
    return f"{column} IS NULL OR ({column} >= 0 AND {column} <> 'NaN')"


class TrailingPeak(Base):
    """A mark of a size class's quote: the highest quote of 2^size_class atoms of the pair seen
    at or after `since`. Trailing stops of one pair and class share their marks, so the peak of
    100,000 of them rises by one write; an order's peak is the largest mark at or after its
    start. Marks are written only when the quote rises above the newest one, or when orders
    started after it (docs/design.md, the trigger engine); a mark no waiting order started
    before is of no use and is deleted."""

    __tablename__ = "trailing_peaks"

    token_in: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_out: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_class: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    peak: Mapped[Decimal] = mapped_column(Amount)

    __table_args__ = (CheckConstraint(_positive("peak"), name="peak_positive"),)


# A child names its parent and its slice, both or neither; a parent's schedule is whole.
TWAP_VALID = (
    "(parent_id IS NULL) = (slice_index IS NULL) AND (slice_index IS NULL OR slice_index >= 0)"
    " AND (slices IS NULL OR (slices >= 1 AND interval_s IS NOT NULL AND interval_s >= 1))"
    " AND ((type = 'twap') = (slices IS NOT NULL))"
)


# An order's landing options, when it names them: a price per CU and a cap never negative.
LANDING_VALID = (
    "(priority_fee_micro_lamports IS NULL OR priority_fee_micro_lamports >= 0)"
    " AND (max_fee_lamports IS NULL OR max_fee_lamports >= 0)"
)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING.value)
    token_in: Mapped[str] = mapped_column(String(64))
    token_out: Mapped[str] = mapped_column(String(64))
    amount_in: Mapped[Decimal] = mapped_column(Amount)
    slippage_bps: Mapped[int] = mapped_column(Integer)
    client_order_id: Mapped[str | None] = mapped_column(String(128))
    # The owner (docs/design.md, "Access: keys, tickets, limits"); rows written outside the API
    # belong to the default account.
    account_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("accounts.id"),
        server_default=text(f"'{DEFAULT_ACCOUNT_ID}'"),
    )
    # Unique per account, not globally: one account's keys say nothing about another's.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the order was last handed to the queue (by intake or the reconciler).
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    dex: Mapped[str | None] = mapped_column(String(32))
    route: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    quoted_amount_out: Mapped[Decimal | None] = mapped_column(Amount)
    min_amount_out: Mapped[Decimal | None] = mapped_column(Amount)
    amount_out: Mapped[Decimal | None] = mapped_column(Amount)
    executed_price: Mapped[Decimal | None] = mapped_column(Amount)
    tx_hash: Mapped[str | None] = mapped_column(String(100), unique=True)
    # The latest attempt's signed transaction (base64) and its blockhash's last valid block
    # height: while it can still land, a retry re-broadcasts these bytes instead of a new swap.
    signed_tx: Mapped[str | None] = mapped_column(Text)
    tx_last_valid_height: Mapped[int | None] = mapped_column(BigInteger)

    # Limit and sniper orders (docs/design.md, the trigger engine). `limit_price` is the client's
    # least tokenOut per one tokenIn, `max_price` a sniper's most tokenIn per one tokenOut.
    # `trigger_price` is the key the trigger engine's index ranges over: the least average price
    # (tokenOut per tokenIn) that can fill the order — the limit itself, or 1/maxPrice rounded
    # down for a sniper (0 without one). `waiting` is true until the order triggers; only then
    # may it be claimed.
    limit_price: Mapped[Decimal | None] = mapped_column(Amount)
    max_price: Mapped[Decimal | None] = mapped_column(Amount)
    trigger_price: Mapped[Decimal | None] = mapped_column(Amount)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waiting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    triggered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Orders that protect a position (docs/design.md, the trigger engine). `stop_price` is the
    # key the stop index ranges over, the most a quote may pay (tokenOut per tokenIn) for the
    # order to fire: a stop's triggerPrice, a bracket's stop-loss, a trailing stop's trigger
    # level when it started (0 if intake could not quote it). A bracket's take-profit is its
    # `limit_price` (and `trigger_price`); `trigger_leg` records the leg that met the market.
    # `size_class` is k with 2^k <= amount in atoms < 2^(k+1): a trailing stop follows the
    # quote of 2^k atoms, shared with every order of its pair and class, and its peak is the
    # larger of `peak_price` (its quote when it started, at `trail_since`) and the marks its
    # class wrote since (`trailing_peaks`). A trailing stop that waits for its
    # `activation_price` has no `trail_since` yet, and its `trigger_price` is that price.
    stop_price: Mapped[Decimal | None] = mapped_column(Amount)
    size_class: Mapped[int | None] = mapped_column(SmallInteger)
    trail_bps: Mapped[int | None] = mapped_column(Integer)
    activation_price: Mapped[Decimal | None] = mapped_column(Amount)
    peak_price: Mapped[Decimal | None] = mapped_column(Amount)
    trail_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trigger_leg: Mapped[str | None] = mapped_column(String(16))
    # A trailing stop's peak now: its own starting peak or its class's largest mark since its
    # start. Loaded only when asked for (`undefer`): answers about trailing stops read it.
    peak_seen: Mapped[Decimal | None] = column_property(
        func.greatest(
            peak_price,
            select(func.max(TrailingPeak.peak))
            .where(
                TrailingPeak.token_in == token_in,
                TrailingPeak.token_out == token_out,
                TrailingPeak.size_class == size_class,
                TrailingPeak.since >= trail_since,
            )
            .scalar_subquery(),
        ),
        deferred=True,
    )
    # TWAP orders (docs/design.md, "TWAP orders"). A parent holds its schedule: `slices` child
    # orders, one every `interval_s` seconds from `created_at`; `next_slice` is the first slice
    # index not yet looked at, `slices_finished` how many children it has reported finished and
    # `amount_in_filled` what they sold. A child names its parent and its slice: one child per
    # (parent_id, slice_index), whoever creates it and however often.
    parent_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), ForeignKey("orders.id"))
    slice_index: Mapped[int | None] = mapped_column(Integer)
    slices: Mapped[int | None] = mapped_column(Integer)
    interval_s: Mapped[int | None] = mapped_column(Integer)
    next_slice: Mapped[int | None] = mapped_column(Integer)
    slices_finished: Mapped[int | None] = mapped_column(Integer)
    amount_in_filled: Mapped[Decimal | None] = mapped_column(Amount)

    # Landing (docs/design.md, "Landing on a contested chain"). The order's own say, NULL for
    # what it left to the settings: a fixed price per CU (NULL: auto, from the chain), its cap
    # on priority fee plus tip, whether it is sent protected. `fees` and `landing` report its
    # latest transaction: while in flight what it pays if it lands, once settled what
    # `getTransaction` says ({baseLamports, priorityLamports, tipLamports, microLamportsPerCu,
    # computeUnitLimit, computeUnitsConsumed}; {via, sentSlot, landedSlot, versions}).
    priority_fee_micro_lamports: Mapped[int | None] = mapped_column(BigInteger)
    max_fee_lamports: Mapped[int | None] = mapped_column(BigInteger)
    mev_protection: Mapped[bool | None] = mapped_column(Boolean)
    fees: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    landing: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failure_retryable: Mapped[bool | None] = mapped_column(Boolean)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in_list("status", OrderStatus), name="status_known"),
        CheckConstraint(_in_list("type", OrderType), name="type_known"),
        CheckConstraint(_positive("amount_in"), name="amount_in_positive"),
        CheckConstraint(_non_negative_or_null("quoted_amount_out"), name="quoted_out_valid"),
        CheckConstraint(_non_negative_or_null("min_amount_out"), name="min_out_valid"),
        CheckConstraint(_non_negative_or_null("amount_out"), name="amount_out_valid"),
        CheckConstraint(_non_negative_or_null("executed_price"), name="executed_price_valid"),
        CheckConstraint("slippage_bps BETWEEN 0 AND 5000", name="slippage_bps_range"),
        CheckConstraint(_non_negative_or_null("limit_price"), name="limit_price_valid"),
        CheckConstraint(_non_negative_or_null("max_price"), name="max_price_valid"),
        CheckConstraint(_non_negative_or_null("trigger_price"), name="trigger_price_valid"),
        CheckConstraint(_non_negative_or_null("stop_price"), name="stop_price_valid"),
        CheckConstraint(_non_negative_or_null("activation_price"), name="activation_price_valid"),
        CheckConstraint(_non_negative_or_null("peak_price"), name="peak_price_valid"),
        CheckConstraint("trail_bps IS NULL OR trail_bps BETWEEN 1 AND 5000", name="trail_range"),
        CheckConstraint("size_class IS NULL OR size_class BETWEEN 0 AND 63", name="class_range"),
        CheckConstraint(
            "trigger_leg IS NULL OR trigger_leg IN ('takeProfit', 'stopLoss')",
            name="trigger_leg_known",
        ),
        # A TWAP parent waits for its schedule, not for a price.
        CheckConstraint(
            "NOT waiting OR trigger_price IS NOT NULL OR stop_price IS NOT NULL OR type = 'twap'",
            name="waiting_has_trigger",
        ),
        CheckConstraint(TWAP_VALID, name="twap_valid"),
        CheckConstraint("attempts >= 0 AND deliveries >= 0 AND last_seq >= 0", name="counters"),
        CheckConstraint(LANDING_VALID, name="landing_options_valid"),
        CheckConstraint("token_in <> token_out", name="distinct_tokens"),
        UniqueConstraint("account_id", "idempotency_key"),
        # A slice is one child row, created once: its parent's children are found by it too.
        UniqueConstraint("parent_id", "slice_index"),
        Index("ix_orders_account_created_at", "account_id", "created_at", "id"),
        # Intake counts an account's unfinished orders of one kind on this index: its waiting
        # orders (their cap) or the others, in flight (theirs), each a range of its own.
        Index(
            "ix_orders_account_unfinished_waiting",
            "account_id",
            "waiting",
            postgresql_where=text("status NOT IN ('confirmed', 'failed', 'cancelled')"),
        ),
        # Listing newest first and the reconciler's sweep both walk this index.
        Index("ix_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_created_at_id", "created_at", "id"),
        # The reconciler only ever looks at unfinished orders: keep its index small.
        Index(
            "ix_orders_unfinished",
            "created_at",
            postgresql_where=text("status NOT IN ('confirmed', 'failed', 'cancelled')"),
        ),
        # The trigger engine's index: per pair, a range scan up to the pair's best price finds
        # the orders that may trigger without reading those that wait (a sniper's awaited mint
        # is its token_out). Only waiting orders are in it, so it stays the size of the book.
        Index(
            "ix_orders_waiting_trigger",
            "token_in",
            "token_out",
            "trigger_price",
            postgresql_where=text("waiting AND status = 'pending'"),
        ),
        # The reconciler's sweep over the orders that may run: waiting orders are not its
        # business (the trigger engine's), so a large book costs its sweep nothing.
        Index(
            "ix_orders_unfinished_ready",
            "created_at",
            postgresql_where=text(
                "status NOT IN ('confirmed', 'failed', 'cancelled') AND NOT waiting"
            ),
        ),
        # The stop index: per pair and size class, a range scan down to the least quote any
        # order of the class can get finds the stops (and stop-losses, and trailing stops at
        # their starting level) that may fire, without reading those far below the market.
        Index(
            "ix_orders_waiting_stop",
            "token_in",
            "token_out",
            "size_class",
            "stop_price",
            postgresql_where=text("waiting AND status = 'pending' AND stop_price IS NOT NULL"),
        ),
        # Trailing stops that follow a shared peak: by trail (a drop of d bps fires the trails up
        # to d) and start (which of the class's marks an order follows), and by start alone (the
        # orders that started after the newest mark; the oldest start).
        Index(
            "ix_orders_trailing_trail",
            "token_in",
            "token_out",
            "size_class",
            "trail_bps",
            "trail_since",
            postgresql_where=text("waiting AND status = 'pending' AND trail_since IS NOT NULL"),
        ),
        Index(
            "ix_orders_trailing_since",
            "token_in",
            "token_out",
            "size_class",
            "trail_since",
            postgresql_where=text("waiting AND status = 'pending' AND trail_since IS NOT NULL"),
        ),
        # The TWAP scheduler's look for the parents that run: empty when none does.
        Index(
            "ix_orders_twap_running",
            "created_at",
            postgresql_where=text("type = 'twap' AND status = 'pending'"),
        ),
        Index(
            "ix_orders_waiting_expiry",
            "expires_at",
            postgresql_where=text("waiting AND status = 'pending' AND expires_at IS NOT NULL"),
        ),
    )


class OrderEvent(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("order_id", "seq"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint(_in_list("status", OrderStatus), name="status_known"),
    )
