"""Data access for accounts and API keys. Takes a Session; adds and flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from order_engine.models import Account, ApiKey


class AccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def account_named(self, name: str) -> Account | None:
        return self.session.scalars(select(Account).where(Account.name == name)).first()

    def add_account(self, name: str) -> Account:
        account = Account(id=uuid.uuid4(), name=name)
        self.session.add(account)
        self.session.flush()
        return account

    def add_key(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key

    def key_by_prefix(self, prefix: str) -> ApiKey | None:
        return self.session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()

    def key_by_id(self, key_id: uuid.UUID) -> ApiKey | None:
        return self.session.scalars(select(ApiKey).where(ApiKey.id == key_id)).first()

    def keys(self) -> Sequence[tuple[ApiKey, Account]]:
        rows = self.session.execute(
            select(ApiKey, Account)
            .join(Account, Account.id == ApiKey.account_id)
            .order_by(ApiKey.created_at)
        )
        return [(key, account) for key, account in rows]

    def revoke(self, prefix: str) -> ApiKey | None:
        """Revoke the key with this prefix (idempotent); None when there is no such key."""
        self.session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return self.key_by_prefix(prefix)
