"""create orders and order events

Revision ID: 0001
Revises:
Create Date: 2026-11-23 22:40:18.925218

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("token_in", sa.String(length=64), nullable=False),
        sa.Column("token_out", sa.String(length=64), nullable=False),
        sa.Column("amount_in", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("slippage_bps", sa.Integer(), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dex", sa.String(length=32), nullable=True),
        sa.Column("route", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("quoted_amount_out", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column("min_amount_out", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column("amount_out", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column("executed_price", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column("tx_hash", sa.String(length=100), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("failure_retryable", sa.Boolean(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "amount_in > 0 AND amount_in <> 'NaN'", name=op.f("ck_orders_amount_in_positive")
        ),
        sa.CheckConstraint(
            "amount_out IS NULL OR (amount_out >= 0 AND amount_out <> 'NaN')",
            name=op.f("ck_orders_amount_out_valid"),
        ),
        sa.CheckConstraint(
            "executed_price IS NULL OR (executed_price >= 0 AND executed_price <> 'NaN')",
            name=op.f("ck_orders_executed_price_valid"),
        ),
        sa.CheckConstraint(
            "min_amount_out IS NULL OR (min_amount_out >= 0 AND min_amount_out <> 'NaN')",
            name=op.f("ck_orders_min_out_valid"),
        ),
        sa.CheckConstraint(
            "quoted_amount_out IS NULL OR (quoted_amount_out >= 0 AND quoted_amount_out <> 'NaN')",
            name=op.f("ck_orders_quoted_out_valid"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed', 'cancelled')",
            name=op.f("ck_orders_status_known"),
        ),
        sa.CheckConstraint(
            "type IN ('market', 'limit', 'sniper')", name=op.f("ck_orders_type_known")
        ),
        sa.CheckConstraint(
            "attempts >= 0 AND deliveries >= 0 AND last_seq >= 0", name=op.f("ck_orders_counters")
        ),
        sa.CheckConstraint(
            "slippage_bps BETWEEN 0 AND 5000", name=op.f("ck_orders_slippage_bps_range")
        ),
        sa.CheckConstraint("token_in <> token_out", name=op.f("ck_orders_distinct_tokens")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_orders_idempotency_key")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_orders_tx_hash")),
    )
    op.create_index("ix_orders_created_at_id", "orders", ["created_at", "id"], unique=False)
    op.create_index("ix_orders_status_created_at", "orders", ["status", "created_at"], unique=False)
    op.create_table(
        "order_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed', 'cancelled')",
            name=op.f("ck_order_events_status_known"),
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_order_events_seq_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_events_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint("order_id", "seq", name=op.f("uq_order_events_order_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("order_events")
    op.drop_index("ix_orders_status_created_at", table_name="orders")
    op.drop_index("ix_orders_created_at_id", table_name="orders")
    op.drop_table("orders")
