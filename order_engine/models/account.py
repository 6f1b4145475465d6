"""Accounts, their own limits and their API keys (docs/design.md, "Access: keys, tickets,
limits").

Every order belongs to an account; a client acts for an account through one of its API keys.
A key is shown once: only its SHA-256 is stored, next to a short public prefix that finds the
row without scanning (the secret part is 32 random bytes, so a plain hash is enough: nothing
to brute-force; docs/reliability.md, "API keys").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, Numeric, String, func
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from order_engine.models.base import Base

# Owns the orders that existed before accounts did, and orders written outside the API (the
# venue replay, tests' own rows). `make run`'s development key belongs to it.
DEFAULT_ACCOUNT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")

SCOPES = ("orders:read", "orders:write", "admin")

# The bounds of the settings the limits replace (order_engine/config).
LIMITS_VALID = (
    "(rate_limit_per_s IS NULL OR rate_limit_per_s BETWEEN 0.01 AND 1000000)"
    " AND (rate_limit_burst IS NULL OR rate_limit_burst >= 1)"
    " AND (max_orders_in_flight IS NULL OR max_orders_in_flight >= 0)"
    " AND (max_waiting_orders IS NULL OR max_waiting_orders >= 0)"
    " AND (max_websockets IS NULL OR max_websockets >= 1)"
)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The account's own limits, each named as the setting it replaces (`Settings.<name>`, the
    # deployment's default); NULL: that setting. Read with the account's keys, so a request
    # costs no query of its own for them.
    rate_limit_per_s: Mapped[Decimal | None] = mapped_column(Numeric)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    max_orders_in_flight: Mapped[int | None] = mapped_column(Integer)
    max_waiting_orders: Mapped[int | None] = mapped_column(Integer)
    max_websockets: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (CheckConstraint(LIMITS_VALID, name="limits_valid"),)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    # The key's public part (`oe_<prefix>_…`): finds the row; never enough to authenticate.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
