"""TWAP orders: a parent's schedule, its children's (parent, slice) and the running parents' index

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00.000000

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.

- `orders` gains nullable columns without defaults (no table rewrite): a child's `parent_id`
  (a foreign key to its parent) and `slice_index`; a parent's `slices`, `interval_s`,
  `next_slice`, `slices_finished` and `amount_in_filled`. Code already running writes none of
  them, and every check below holds for its rows.
- `type` may be `twap`, and a waiting `twap` parent needs no trigger price: both checks are
  replaced. The new checks and the foreign key are added NOT VALID (no scan under the table's
  lock) and validated after, which takes a lock that lets writes go on.
- One child per (parent_id, slice_index): a unique constraint. Like 0006's, its index is built
  while intake's inserts wait (a SHARE lock), within the statement timeout; every existing row
  has a NULL parent, so it holds nothing but the NULLs.
- `ix_orders_twap_running`, partial on running parents: none exist yet, so it builds empty.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)
INTEGERS = ("slice_index", "slices", "interval_s", "next_slice", "slices_finished")
# As the model declares them (order_engine/models/order.py), frozen here.
TYPES_BEFORE = "('market', 'limit', 'sniper', 'stop', 'oco', 'trailing_stop')"
TYPE_KNOWN = f"type IN {TYPES_BEFORE[:-1]}, 'twap')"
TYPE_KNOWN_BEFORE = f"type IN {TYPES_BEFORE}"
WAITING_HAS_TRIGGER_BEFORE = "NOT waiting OR trigger_price IS NOT NULL OR stop_price IS NOT NULL"
WAITING_HAS_TRIGGER = f"{WAITING_HAS_TRIGGER_BEFORE} OR type = 'twap'"
TWAP_VALID = (
    "(parent_id IS NULL) = (slice_index IS NULL) AND (slice_index IS NULL OR slice_index >= 0)"
    " AND (slices IS NULL OR (slices >= 1 AND interval_s IS NOT NULL AND interval_s >= 1))"
    " AND ((type = 'twap') = (slices IS NOT NULL))"
)
FOREIGN_KEY = "fk_orders_parent_id_orders"


def _replace_check(name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), "orders", type_="check")
    _add_check(name, condition)


def _add_check(name: str, condition: str) -> None:
    op.execute(f"ALTER TABLE orders ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    op.execute(f"ALTER TABLE orders VALIDATE CONSTRAINT {name}")


def upgrade() -> None:
    op.add_column("orders", sa.Column("parent_id", sa.UUID(), nullable=True))
    for column in INTEGERS:
        op.add_column("orders", sa.Column(column, sa.Integer(), nullable=True))
    op.add_column("orders", sa.Column("amount_in_filled", AMOUNT, nullable=True))
    op.execute(
        f"ALTER TABLE orders ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (parent_id) "
        "REFERENCES orders (id) NOT VALID"
    )
    op.execute(f"ALTER TABLE orders VALIDATE CONSTRAINT {FOREIGN_KEY}")
    _replace_check("ck_orders_type_known", TYPE_KNOWN)
    _replace_check("ck_orders_waiting_has_trigger", WAITING_HAS_TRIGGER)
    _add_check("ck_orders_twap_valid", TWAP_VALID)
    op.create_unique_constraint(
        op.f("uq_orders_parent_id_slice_index"), "orders", ["parent_id", "slice_index"]
    )
    op.create_index(
        "ix_orders_twap_running",
        "orders",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("type = 'twap' AND status = 'pending'"),
    )


def downgrade() -> None:
    # Refused while TWAP orders exist (the old type check would not hold): end or delete them.
    op.drop_index("ix_orders_twap_running", table_name="orders")
    op.drop_constraint(op.f("uq_orders_parent_id_slice_index"), "orders", type_="unique")
    op.drop_constraint(op.f("ck_orders_twap_valid"), "orders", type_="check")
    _replace_check("ck_orders_waiting_has_trigger", WAITING_HAS_TRIGGER_BEFORE)
    _replace_check("ck_orders_type_known", TYPE_KNOWN_BEFORE)
    op.drop_constraint(FOREIGN_KEY, "orders", type_="foreignkey")
    op.drop_column("orders", "amount_in_filled")
    for column in reversed(INTEGERS):
        op.drop_column("orders", column)
    op.drop_column("orders", "parent_id")
