"""simulated venues and chain

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 22:46:17.674753

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sim_pools",
        sa.Column("pool_id", sa.String(length=64), nullable=False),
        sa.Column("venue", sa.String(length=32), nullable=False),
        sa.Column("mint_x", sa.String(length=64), nullable=False),
        sa.Column("mint_y", sa.String(length=64), nullable=False),
        sa.Column("state", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pool_id", name=op.f("pk_sim_pools")),
    )
    op.create_table(
        "sim_transactions",
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.Column("memo", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("amount_in", sa.Numeric(precision=40, scale=0), nullable=False),
        sa.Column("amount_out", sa.Numeric(precision=40, scale=0), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("signature", name=op.f("pk_sim_transactions")),
    )
    op.create_index("ix_sim_transactions_memo", "sim_transactions", ["memo"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sim_transactions_memo", table_name="sim_transactions")
    op.drop_table("sim_transactions")
    op.drop_table("sim_pools")
