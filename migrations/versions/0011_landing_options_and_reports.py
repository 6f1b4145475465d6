"""Landing: an order's own say on its fees and sending, and what its transaction paid

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:00:00.000000

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.

- `orders` gains nullable columns without defaults (no table rewrite): the order's
  `priority_fee_micro_lamports` (NULL: auto), `max_fee_lamports` and `mev_protection` (NULL:
  the settings'), and the reports of its latest transaction, `fees` and `landing` (JSONB).
  Code already running writes none of them.
- One check on the two amounts, added NOT VALID (no scan under the table's lock) and validated
  after, which takes a lock that lets writes go on; every existing row has NULLs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the model declares it (order_engine/models/order.py), frozen here.
LANDING_VALID = (
    "(priority_fee_micro_lamports IS NULL OR priority_fee_micro_lamports >= 0)"
    " AND (max_fee_lamports IS NULL OR max_fee_lamports >= 0)"
)
CHECK = "ck_orders_landing_options_valid"


def upgrade() -> None:
    op.add_column("orders", sa.Column("priority_fee_micro_lamports", sa.BigInteger()))
    op.add_column("orders", sa.Column("max_fee_lamports", sa.BigInteger()))
    op.add_column("orders", sa.Column("mev_protection", sa.Boolean()))
    op.add_column("orders", sa.Column("fees", postgresql.JSONB(astext_type=sa.Text())))
    op.add_column("orders", sa.Column("landing", postgresql.JSONB(astext_type=sa.Text())))
    op.execute(f"ALTER TABLE orders ADD CONSTRAINT {CHECK} CHECK ({LANDING_VALID}) NOT VALID")
    op.execute(f"ALTER TABLE orders VALIDATE CONSTRAINT {CHECK}")


def downgrade() -> None:
    op.drop_constraint(op.f(CHECK), "orders", type_="check")
    for column in ("landing", "fees", "mev_protection", "max_fee_lamports"):
        op.drop_column("orders", column)
    op.drop_column("orders", "priority_fee_micro_lamports")
