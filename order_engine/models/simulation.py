"""State of the simulated venues and chain, shared by every worker process.

This is the stand-in for the outside world (pool accounts on chain, the ledger of landed
transactions). It lives in PostgreSQL so it survives worker crashes and lets the engine ask
"did signature X land?" after a restart. The engine never writes it in the same transaction as
its own tables: to the engine it is a remote system.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Numeric, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from order_engine.models.base import Base

Atoms = Numeric(40, 0)


class SimPool(Base):
    __tablename__ = "sim_pools"

    pool_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    venue: Mapped[str] = mapped_column(String(32))
    mint_x: Mapped[str] = mapped_column(String(64))
    mint_y: Mapped[str] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SimTransaction(Base):
    """A transaction the simulated cluster processed, landed or failed, keyed by signature."""

    __tablename__ = "sim_transactions"

    signature: Mapped[str] = mapped_column(String(100), primary_key=True)
    memo: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    amount_in: Mapped[Decimal] = mapped_column(Atoms)
    amount_out: Mapped[Decimal] = mapped_column(Atoms)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_sim_transactions_memo", "memo"),)
