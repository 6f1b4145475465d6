"""reseed simulated pools: Meteora pools become DLMM bins

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 23:30:00

The simulated pools are reseeded lazily from the catalogue on first use, so dropping the old
constant-product rows is all it takes to move Meteora to the DLMM model.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM sim_pools")


def downgrade() -> None:
    op.execute("DELETE FROM sim_pools")
