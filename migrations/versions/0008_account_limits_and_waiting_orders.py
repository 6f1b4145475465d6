"""each account's own limits; waiting orders counted apart from orders in flight

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00.000000

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.

- `accounts` gains one nullable column per limit an account may have of its own, named as the
  setting it replaces (NULL: that setting, the deployment's default), and a check of their
  bounds. Nullable columns without a default rewrite nothing; code already running reads none
  of them.
- Intake counts an account's waiting orders and its orders in flight apart, each up to its cap:
  the index on unfinished orders by account gains `waiting` as its second column, so that each
  count is a range scan of its own kind's entries. Code already running counts on the new index
  as well (its leading column and its predicate are the old index's). Like 0006's, the build
  reads the whole table while intake's inserts wait (a SHARE lock), within the statement timeout.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "status NOT IN ('confirmed', 'failed', 'cancelled')"
LIMITS = {
    "rate_limit_per_s": sa.Numeric(),
    "rate_limit_burst": sa.Integer(),
    "max_orders_in_flight": sa.Integer(),
    "max_waiting_orders": sa.Integer(),
    "max_websockets": sa.Integer(),
}
# As the model declares it (order_engine/models/account.py), frozen here.
LIMITS_VALID = (
    "(rate_limit_per_s IS NULL OR rate_limit_per_s BETWEEN 0.01 AND 1000000)"
    " AND (rate_limit_burst IS NULL OR rate_limit_burst >= 1)"
    " AND (max_orders_in_flight IS NULL OR max_orders_in_flight >= 0)"
    " AND (max_waiting_orders IS NULL OR max_waiting_orders >= 0)"
    " AND (max_websockets IS NULL OR max_websockets >= 1)"
)


def upgrade() -> None:
    for name, column_type in LIMITS.items():
        op.add_column("accounts", sa.Column(name, column_type, nullable=True))
    op.create_check_constraint(op.f("ck_accounts_limits_valid"), "accounts", LIMITS_VALID)
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
    op.drop_constraint(op.f("ck_accounts_limits_valid"), "accounts", type_="check")
    for name in reversed(LIMITS):
        op.drop_column("accounts", name)
