"""waiting orders counted apart from orders in flight: the per-account index of both

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00.000000

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.

Intake counts an account's waiting orders and its orders in flight apart, each up to its cap:
the index on unfinished orders by account gains `waiting` as its second column, so that each
count is a range scan of its own kind's entries. Code already running counts on the new index
as well (its leading column and its predicate are the old index's). Like 0006's, the build reads
the whole table while intake's inserts wait (a SHARE lock), within the statement timeout.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "status NOT IN ('confirmed', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_index(
        "ix_orders_account_unfinished_waiting",
        "orders",
        ["account_id", "waiting"],
        postgresql_where=sa.text(UNFINISHED),
    )
    op.drop_index("ix_orders_account_unfinished", table_name="orders")


def downgrade() -> None:
    op.create_index(
        "ix_orders_account_unfinished",
        "orders",
        ["account_id"],
        postgresql_where=sa.text(UNFINISHED),
    )
    op.drop_index("ix_orders_account_unfinished_waiting", table_name="orders")
