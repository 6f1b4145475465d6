"""dispatch time and unfinished orders index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 22:59:07.316424

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_orders_unfinished",
        "orders",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status NOT IN ('confirmed', 'failed', 'cancelled')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_orders_unfinished",
        table_name="orders",
        postgresql_where=sa.text("status NOT IN ('confirmed', 'failed', 'cancelled')"),
    )
    op.drop_column("orders", "dispatched_at")
