"""accounts and API keys; every order belongs to an account, idempotency keys per account

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00

docs/design.md, "Access: keys, tickets, limits". The existing orders go to the default account (`make run`'s development key belongs
to it), so nothing a developer already has disappears from view. The global unique index on
`idempotency_key` becomes unique per account.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ACCOUNT_ID = "00000000-0000-0000-0000-000000000001"
UNFINISHED = "status NOT IN ('confirmed', 'failed', 'cancelled')"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "accounts",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.execute(f"INSERT INTO accounts (id, name) VALUES ('{DEFAULT_ACCOUNT_ID}', 'default')")
    op.create_table(
        "api_keys",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_api_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"])
    op.add_column(
        "orders",
        sa.Column(
            "account_id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text(f"'{DEFAULT_ACCOUNT_ID}'"),
            nullable=False,
        ),
    )
    op.create_foreign_key(
        op.f("fk_orders_account_id_accounts"), "orders", "accounts", ["account_id"], ["id"]
    )
    op.drop_constraint(op.f("uq_orders_idempotency_key"), "orders", type_="unique")
    op.create_unique_constraint(
        op.f("uq_orders_account_id_idempotency_key"), "orders", ["account_id", "idempotency_key"]
    )
    op.create_index("ix_orders_account_created_at", "orders", ["account_id", "created_at", "id"])
    op.create_index(
        "ix_orders_account_unfinished",
        "orders",
        ["account_id"],
        postgresql_where=sa.text(UNFINISHED),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_account_unfinished", table_name="orders")
    op.drop_index("ix_orders_account_created_at", table_name="orders")
    op.drop_constraint(op.f("uq_orders_account_id_idempotency_key"), "orders", type_="unique")
    # Keys that were unique per account may collide globally: keep the first of each.
    op.execute(
        "UPDATE orders SET idempotency_key = NULL WHERE id IN (SELECT id FROM (SELECT id, "
        "row_number() OVER (PARTITION BY idempotency_key ORDER BY created_at) AS n FROM orders "
        "WHERE idempotency_key IS NOT NULL) t WHERE n > 1)"
    )
    op.create_unique_constraint(op.f("uq_orders_idempotency_key"), "orders", ["idempotency_key"])
    op.drop_constraint(op.f("fk_orders_account_id_accounts"), "orders", type_="foreignkey")
    op.drop_column("orders", "account_id")
    op.drop_index(op.f("ix_api_keys_account_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("accounts")
