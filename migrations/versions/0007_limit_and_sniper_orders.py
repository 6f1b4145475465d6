"""limit and sniper orders: trigger columns and the waiting-order indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00.000000

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py. Every new column is nullable or has a constant
default (no table rewrite); the partial indexes cover only waiting orders, which no earlier
code creates, so they build on an empty set.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)
WAITING = "waiting AND status = 'pending'"


def _non_negative_or_null(column: str) -> str:
    return f"{column} IS NULL OR ({column} >= 0 AND {column} <> 'NaN')"


def upgrade() -> None:
    op.add_column("orders", sa.Column("limit_price", AMOUNT, nullable=True))
    op.add_column("orders", sa.Column("max_price", AMOUNT, nullable=True))
    op.add_column("orders", sa.Column("trigger_price", AMOUNT, nullable=True))
    op.add_column("orders", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "orders",
        sa.Column("waiting", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("orders", sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=True))
    for column in ("limit_price", "max_price", "trigger_price"):
        op.create_check_constraint(
            op.f(f"ck_orders_{column}_valid"), "orders", _non_negative_or_null(column)
        )
    op.create_check_constraint(
        op.f("ck_orders_waiting_has_trigger"), "orders", "NOT waiting OR trigger_price IS NOT NULL"
    )
    op.create_index(
        "ix_orders_waiting_trigger",
        "orders",
        ["token_in", "token_out", "trigger_price"],
        unique=False,
        postgresql_where=sa.text(WAITING),
    )
    op.create_index(
        "ix_orders_unfinished_ready",
        "orders",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text(
            "status NOT IN ('confirmed', 'failed', 'cancelled') AND NOT waiting"
        ),
    )
    op.create_index(
        "ix_orders_waiting_expiry",
        "orders",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text(f"{WAITING} AND expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_waiting_expiry", table_name="orders")
    op.drop_index("ix_orders_unfinished_ready", table_name="orders")
    op.drop_index("ix_orders_waiting_trigger", table_name="orders")
    op.drop_constraint(op.f("ck_orders_waiting_has_trigger"), "orders", type_="check")
    for column in ("limit_price", "max_price", "trigger_price"):
        op.drop_constraint(op.f(f"ck_orders_{column}_valid"), "orders", type_="check")
    for column in ("triggered_at", "waiting", "expires_at", "trigger_price", "max_price"):
        op.drop_column("orders", column)
    op.drop_column("orders", "limit_price")
