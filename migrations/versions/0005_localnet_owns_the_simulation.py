"""the localnet owns the simulation: drop the simulator's tables, keep each order's signed tx

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 12:00:00

The simulated chain and venues moved out of the engine into the localnet process, which keeps
its own state (docs/localnet.md), so `sim_pools` and `sim_transactions` go. An order now keeps the
signed transaction of its latest attempt and that transaction's blockhash expiry: a retry or a
take-over re-broadcasts the same bytes while they can still land, instead of waiting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("sim_transactions")
    op.drop_table("sim_pools")
    op.add_column("orders", sa.Column("signed_tx", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("tx_last_valid_height", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "tx_last_valid_height")
    op.drop_column("orders", "signed_tx")
    op.create_table(
        "sim_pools",
        sa.Column("pool_id", sa.String(64), primary_key=True),
        sa.Column("venue", sa.String(32), nullable=False),
        sa.Column("mint_x", sa.String(64), nullable=False),
        sa.Column("mint_y", sa.String(64), nullable=False),
        sa.Column("state", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_table(
        "sim_transactions",
        sa.Column("signature", sa.String(100), primary_key=True),
        sa.Column("memo", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("amount_in", sa.Numeric(40, 0), nullable=False),
        sa.Column("amount_out", sa.Numeric(40, 0), nullable=False),
        sa.Column("error_message", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index("ix_sim_transactions_memo", "sim_transactions", ["memo"])
