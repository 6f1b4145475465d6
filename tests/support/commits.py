"""What a test commits for real beside its rolled-back session (the `db_session` fixture), and
removes after that session has rolled back.

Intake commits at once on pooled connections, as in production (`IntakeCommitter`), whatever
session the app's views use; so an order a test submits through an app is committed for real,
and so must be the account it belongs to (its foreign key is checked against committed rows).
`TestCommits` is the app's intake committer in tests: it records the orders it inserted, makes
committed accounts and keys on request, and deletes all of them (with the orders of those
accounts) when the test is over.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from order_engine.models import Order
from order_engine.repositories.intake import Intake, IntakeCommitter


class TestCommits(IntakeCommitter):
    __test__ = False  # not a test class, whatever its name

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.orders: list[uuid.UUID] = []
        self.accounts: list[uuid.UUID] = []

    def insert_with_first_event(
        self, order: Order, key: str | None, now: datetime, first_data: str
    ) -> bool:
        inserted = super().insert_with_first_event(order, key, now, first_data)
        if inserted:
            self.orders.append(order.id)
        return inserted

    def insert_unless_near_cap(
        self, order: Order, key: str | None, now: datetime, first_data: str, far: int
    ) -> Intake:
        outcome = super().insert_unless_near_cap(order, key, now, first_data, far)
        if outcome is Intake.INSERTED:
            self.orders.append(order.id)
        return outcome

    def account(self, *orders: dict[str, Any]) -> uuid.UUID:
        """A new account, committed, with an order of each of `orders`' fields (committed too:
        intake counts the account's orders on its own connections)."""
        from tests.support.factories import add_account, add_order

        with Session(self.engine) as session, session.begin():
            account_id = add_account(session).id
            for fields in orders:
                add_order(session, account_id=account_id, **fields)
        self.accounts.append(account_id)
        return account_id

    def key(self, account: str, scopes: Iterable[str]) -> str:
        """A new key of the account called `account` (created if new), committed."""
        from tests.support.factories import add_account, add_key

        with Session(self.engine) as session, session.begin():
            self.accounts.append(add_account(session, account).id)
            return add_key(session, account, scopes)

    def delete(self) -> None:
        """Delete what the test committed: its orders (and their events and slices), and the
        accounts it made with their keys and orders."""
        if not self.orders and not self.accounts:
            return
        params: dict[str, Any] = {"orders": self.orders, "accounts": self.accounts}
        mine = "(o.id = ANY(:orders) OR o.account_id = ANY(:accounts))"
        with self.engine.begin() as conn:
            ids = [
                row[0]
                for row in conn.execute(text(f"SELECT id FROM orders o WHERE {mine}"), params)
            ]
            conn.execute(text("DELETE FROM orders WHERE parent_id = ANY(:ids)"), {"ids": ids})
            conn.execute(text("DELETE FROM orders WHERE id = ANY(:ids)"), {"ids": ids})
            conn.execute(text("DELETE FROM accounts WHERE id = ANY(:accounts)"), params)


def on_test_session(app: Any, session: Session) -> Any:
    """`app` with every session its views open being the test's `session` (the `db_session`
    fixture's, rolled back after the test), and its intake committed for real by that
    session's `TestCommits`, removed after the test."""
    app.extensions["order_engine.session_factory"] = lambda: session
    app.extensions["order_engine.intake_committer"] = session.info["commits"]
    return app
