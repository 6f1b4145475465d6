"""Data access for accounts (with their own limits) and API keys. Takes a Session; adds and
flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, func, select, update
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

    def key_and_account_by_prefix(self, prefix: str) -> tuple[ApiKey, Account] | None:
        return self._key_and_account(ApiKey.prefix == prefix)

    def key_and_account_by_id(self, key_id: uuid.UUID) -> tuple[ApiKey, Account] | None:
        return self._key_and_account(ApiKey.id == key_id)

    def _key_and_account(self, where: ColumnElement[bool]) -> tuple[ApiKey, Account] | None:
        """A key with its account, in one query: the account's limits come with its key. Read
        afresh (`populate_existing`) even where the session already holds the rows, since a
        revocation or new limits are what the caller looks for."""
        row = self.session.execute(
            select(ApiKey, Account)
            .join(Account, Account.id == ApiKey.account_id)
            .where(where)
            .execution_options(populate_existing=True)
        ).first()
        return None if row is None else (row[0], row[1])

    def accounts_with_key_counts(self, name: str | None = None) -> list[tuple[Account, int, int]]:
        """Every account (or the one called `name`) by name, with its active and revoked keys."""
        revoked = ApiKey.revoked_at.is_not(None)
        query = (
            select(
                Account,
                func.count(ApiKey.id).filter(~revoked),
                func.count(ApiKey.id).filter(revoked),
            )
            .outerjoin(ApiKey, ApiKey.account_id == Account.id)
            .group_by(Account.id)
            .order_by(Account.name)
        )
        if name is not None:
            query = query.where(Account.name == name)
        return [(account, active, gone) for account, active, gone in self.session.execute(query)]

    def set_limits(self, account: Account, limits: Mapping[str, Decimal | int | None]) -> None:
        """Set these of the account's own limits (None: the deployment's setting again)."""
        for name, value in limits.items():
            setattr(account, name, value)
        self.session.flush()

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
