"""Rows for tests, built on the test's own session: they add and flush, and never commit.

The test owns the unit of work: inside the `db_session` fixture (one transaction rolled back
after the test) a flush is enough for a repository under test to see the rows; a test whose
app or service opens its own transaction on that session commits first (a savepoint, still
rolled back at the end), and a test whose other processes must see the rows commits for real.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from order_engine.models import Account, ApiKey, Order
from order_engine.repositories.account import AccountRepository
from order_engine.repositories.order import OrderRepository
from order_engine.services.access import hash_key


def build_order(**overrides: Any) -> Order:
    """A market order SOL→USDC, pending, never attempted; not added to any session."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "type": "market",
        "status": "pending",
        "token_in": "SOL",
        "token_out": "USDC",
        "amount_in": Decimal("1.5"),
        "slippage_bps": 50,
        "attempts": 0,
        "deliveries": 0,
        "last_seq": 0,
        **overrides,
    }
    return Order(**fields)


def add_order(session: Session, *, first_event: dict[str, Any] | None = None, **overrides: Any):
    """`build_order(**overrides)`, added and flushed; with `first_event`, also its `pending`
    event (seq 1) carrying that data, as intake writes it."""
    repository = OrderRepository(session)
    order = repository.add(build_order(**overrides))
    if first_event is not None:
        repository.append_first_event(order, first_event)
    return order


def add_account(session: Session, name: str | None = None) -> Account:
    """The account called `name` (a new, uniquely named one by default), flushed."""
    accounts = AccountRepository(session)
    name = name or f"account-{uuid.uuid4().hex[:8]}"
    return accounts.account_named(name) or accounts.add_account(name)


def add_key(
    session: Session,
    account: str | None = None,
    scopes: Iterable[str] = ("orders:read", "orders:write"),
    name: str = "test",
) -> str:
    """A new API key of the account called `account` (created if new), flushed; returns the
    key itself (`oe_<prefix>_<secret>`), which only the caller ever sees."""
    owner = add_account(session, account)
    prefix = secrets.token_hex(4)
    key = f"oe_{prefix}_{secrets.token_urlsafe(32)}"
    AccountRepository(session).add_key(
        ApiKey(
            id=uuid.uuid4(),
            account_id=owner.id,
            name=name,
            prefix=prefix,
            key_hash=hash_key(key),
            scopes=sorted(set(scopes)),
        )
    )
    return key
