"""orders that protect a position: stop, OCO bracket, trailing stop

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:30:00.000000

Migrations must stay backwards compatible with the code already running, and finish inside the
lock and statement timeouts set in env.py.

- `orders` gains the new types' columns, all nullable with no default (no table rewrite); code
  already running writes none of them.
- The checks on the order type and on a waiting order's trigger are replaced by wider ones
  (the new types; a stop waits on `stop_price`), and the new columns get theirs: each is added
  NOT VALID (no scan under the table's lock) and validated after, which only blocks writes
  that break it. Code already running writes only rows both versions accept.
- Three partial indexes over waiting orders of the new types (none exist yet: they build on an
  empty set, though the build reads the table while intake's inserts wait, as 0008's did).
- `trailing_peaks`, the marks of the quotes that trailing stops follow, shared per pair and
  size class.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)
WAITING = "waiting AND status = 'pending'"
STARTED = f"{WAITING} AND trail_since IS NOT NULL"
TYPES_BEFORE = "('market', 'limit', 'sniper')"
TYPES = "('market', 'limit', 'sniper', 'stop', 'oco', 'trailing_stop')"
COLUMNS = {
    "stop_price": AMOUNT,
    "size_class": sa.SmallInteger(),
    "trail_bps": sa.Integer(),
    "activation_price": AMOUNT,
    "peak_price": AMOUNT,
    "trail_since": sa.DateTime(timezone=True),
    "trigger_leg": sa.String(16),
}


def _non_negative_or_null(column: str) -> str:
    return f"{column} IS NULL OR ({column} >= 0 AND {column} <> 'NaN')"


# As the model declares them (order_engine/models/order.py), frozen here.
CHECKS = {
    "ck_orders_stop_price_valid": _non_negative_or_null("stop_price"),
    "ck_orders_activation_price_valid": _non_negative_or_null("activation_price"),
    "ck_orders_peak_price_valid": _non_negative_or_null("peak_price"),
    "ck_orders_trail_range": "trail_bps IS NULL OR trail_bps BETWEEN 1 AND 5000",
    "ck_orders_class_range": "size_class IS NULL OR size_class BETWEEN 0 AND 63",
    "ck_orders_trigger_leg_known": (
        "trigger_leg IS NULL OR trigger_leg IN ('takeProfit', 'stopLoss')"
    ),
}
REPLACED = {
    "ck_orders_type_known": (f"type IN {TYPES_BEFORE}", f"type IN {TYPES}"),
    "ck_orders_waiting_has_trigger": (
        "NOT waiting OR trigger_price IS NOT NULL",
        "NOT waiting OR trigger_price IS NOT NULL OR stop_price IS NOT NULL",
    ),
}


def _drop_check(name: str) -> None:
    op.execute(f"ALTER TABLE orders DROP CONSTRAINT {name}")


def _add_check(name: str, condition: str) -> None:
    op.execute(f"ALTER TABLE orders ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    op.execute(f"ALTER TABLE orders VALIDATE CONSTRAINT {name}")


def upgrade() -> None:
    for name, column_type in COLUMNS.items():
        op.add_column("orders", sa.Column(name, column_type, nullable=True))
    for name, condition in CHECKS.items():
        _add_check(name, condition)
    for name, (_before, after) in REPLACED.items():
        _drop_check(name)
        _add_check(name, after)
    op.create_index(
        "ix_orders_waiting_stop",
        "orders",
        ["token_in", "token_out", "size_class", "stop_price"],
        postgresql_where=sa.text(f"{WAITING} AND stop_price IS NOT NULL"),
    )
    op.create_index(
        "ix_orders_trailing_trail",
        "orders",
        ["token_in", "token_out", "size_class", "trail_bps", "trail_since"],
        postgresql_where=sa.text(STARTED),
    )
    op.create_index(
        "ix_orders_trailing_since",
        "orders",
        ["token_in", "token_out", "size_class", "trail_since"],
        postgresql_where=sa.text(STARTED),
    )
    op.create_table(
        "trailing_peaks",
        sa.Column("token_in", sa.String(64), nullable=False),
        sa.Column("token_out", sa.String(64), nullable=False),
        sa.Column("size_class", sa.SmallInteger(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peak", AMOUNT, nullable=False),
        sa.CheckConstraint(
            "peak > 0 AND peak <> 'NaN'", name=op.f("ck_trailing_peaks_peak_positive")
        ),
        sa.PrimaryKeyConstraint(
            "token_in", "token_out", "size_class", "since", name=op.f("pk_trailing_peaks")
        ),
    )


def downgrade() -> None:
    """Refused while orders of the new types exist (their type no longer passes the check)."""
    op.drop_table("trailing_peaks")
    for index in ("ix_orders_trailing_since", "ix_orders_trailing_trail", "ix_orders_waiting_stop"):
        op.drop_index(index, table_name="orders")
    for name, (before, _after) in REPLACED.items():
        _drop_check(name)
        _add_check(name, before)
    for name in reversed(CHECKS):
        _drop_check(name)
    for name in reversed(COLUMNS):
        op.drop_column("orders", name)
