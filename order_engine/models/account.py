"""Accounts and their API keys (DESIGN §9).

Every order belongs to an account; a client acts for an account through one of its API keys.
A key is shown once: only its SHA-256 is stored, next to a short public prefix that finds the
row without scanning (the secret part is 32 random bytes, so a plain hash is enough: nothing
to brute-force, research/reliability.md §6 API2).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, func
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from order_engine.models.base import Base

# Owns the orders that existed before accounts did, and orders written outside the API (the
# venue replay, tests' own rows). `make run`'s development key belongs to it.
DEFAULT_ACCOUNT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")

SCOPES = ("orders:read", "orders:write", "admin")


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


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
