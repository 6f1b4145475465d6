"""The TWAP scheduler in process, on PostgreSQL, on a clock of its own: which slices a step
starts, that a step is taken once whoever takes it, the account's cap, the limit; and a slice
the market leaves before its swap waits like a triggered limit order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from order_engine.config import Settings
from order_engine.services.execution import Outcome
from order_engine.services.twap import SchedulerRun, TwapService

# The executor's in-process rig (its fixture, found here by name).
from tests.integration.test_execution_recovery import rig  # noqa: F401
from tests.support.factories import add_account, add_order

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class NullPublisher:
    def publish(self, payload: dict, account_id: Any = None) -> bool:
        return True

    def publish_many(self, payloads: list[dict], account_id: Any = None) -> bool:
        return True


@dataclass
class Quote:
    amount_out: int


class FixedRouter:
    """Quotes any amount of SOL at `usdc_per_sol` USDC a SOL (9 decimals in, 6 out)."""

    def __init__(self, usdc_per_sol: int) -> None:
        self.usdc_per_sol = usdc_per_sol

    def route(self, _token_in: Any, _token_out: Any, atoms: int) -> Quote:
        return Quote(atoms * self.usdc_per_sol // 1000)


@pytest.fixture
def session(engine, clean_tables):
    with Session(engine, expire_on_commit=False) as session:
        yield session


def scheduler(session, test_settings, at=NOW, router=None) -> tuple[TwapService, list]:
    sent: list[tuple[uuid.UUID, float | None, dict | None]] = []
    service = TwapService(
        session,
        router,
        NullPublisher(),  # type: ignore[arg-type]
        Settings.from_env(test_settings),
        send=lambda order_id, countdown_s=None, copy=None: sent.append(
            (order_id, countdown_s, copy)
        ),
        clock=lambda: at,
    )
    return service, sent


def parent(session, accepted, slices=4, interval_s=10, amount="0.4", **extra) -> uuid.UUID:
    with session.begin():
        order = add_order(
            session,
            first_event={},
            type="twap",
            waiting=True,
            amount_in=Decimal(amount),
            slices=slices,
            interval_s=interval_s,
            created_at=accepted,
            **extra,
        )
    return order.id


def children(session, parent_id) -> list[tuple[int, str, Decimal]]:
    with session.begin():
        rows = session.execute(
            text(
                "SELECT slice_index, status, amount_in FROM orders WHERE parent_id = :p "
                "ORDER BY slice_index"
            ),
            {"p": parent_id},
        )
        return [tuple(row) for row in rows]


def row(session, order_id) -> dict:
    with session.begin():
        return dict(
            session.execute(text("SELECT * FROM orders WHERE id = :id"), {"id": order_id})
            .mappings()
            .one()
        )


def test_a_step_starts_what_is_due_within_the_lookahead_each_once_with_its_countdown(
    session, test_settings
):
    parent_id = parent(session, NOW - timedelta(seconds=10.5))  # slices 0, 1 due; 2 at +9.5 s
    service, sent = scheduler(session, test_settings)
    assert len(service.evaluate().started) == 2
    assert [(i, s) for i, s, _ in children(session, parent_id)] == [(0, "pending"), (1, "pending")]
    assert [countdown for _, countdown, _ in sent] == [None, None]  # both overdue: now
    assert [Decimal(copy["amount"]) for _, _, copy in sent] == [Decimal("0.1")] * 2  # their copies
    again, sent_again = scheduler(session, test_settings)
    assert again.evaluate().started == []  # the same step, seen again: nothing
    assert sent_again == []
    later, sent_later = scheduler(session, test_settings, at=NOW + timedelta(seconds=8.6))
    assert len(later.evaluate().started) == 1  # slice 2, 0.9 s ahead of its time
    assert sent_later[0][1] == pytest.approx(0.9)
    assert row(session, parent_id)["next_slice"] == 3


def test_two_schedulers_taking_the_same_step_start_its_slices_once(session, test_settings):
    parent_id = parent(session, NOW)
    first, _ = scheduler(session, test_settings)
    second, sent = scheduler(session, test_settings)
    with session.begin():
        [(seen, kids)] = second.twaps.actionable(NOW, 0, 10)
    first.evaluate()
    run = second._plan(seen, kids, NOW)
    assert run.start  # it would start slice 0 too ...
    second._advance(seen, kids, NOW, SchedulerRun())
    assert sent == []  # ... but its compare-and-set matched nothing: no child, no task
    assert [i for i, _, _ in children(session, parent_id)] == [0]


def test_slices_beyond_the_accounts_cap_wait_until_it_has_room(session, test_settings):
    with session.begin():
        account = add_account(session)
        account.max_orders_in_flight = 2
        add_order(session, account_id=account.id)  # one order in flight already
    parent_id = parent(session, NOW - timedelta(seconds=30), account_id=account.id)
    service, _ = scheduler(session, test_settings)
    service.evaluate()
    assert [i for i, _, _ in children(session, parent_id)] == [0]  # room for one
    assert row(session, parent_id)["next_slice"] == 0  # the schedule waits for the others
    with session.begin():
        session.execute(
            text("UPDATE orders SET status = 'confirmed' WHERE parent_id = :p"), {"p": parent_id}
        )
    service.evaluate()
    assert [i for i, _, _ in children(session, parent_id)] == [0, 1]


def test_a_slice_the_limit_holds_back_waits_for_the_next_interval_then_starts_with_it(
    session, test_settings
):
    parent_id = parent(session, NOW, slices=3, limit_price=Decimal("200"))
    low, _ = scheduler(session, test_settings, router=FixedRouter(150))
    assert low.evaluate().held_back == 1
    assert children(session, parent_id) == []
    high, _ = scheduler(session, test_settings, NOW + timedelta(seconds=5), FixedRouter(250))
    assert high.evaluate().started == []  # quoted when due, not ahead: slice 1 is due at +10 s
    due, sent = scheduler(session, test_settings, NOW + timedelta(seconds=10), FixedRouter(250))
    assert len(due.evaluate().started) == 2
    assert [copy for _, _, copy in sent] == [None, None]  # a copy has no limit: the row
    kids = children(session, parent_id)
    assert [(i, a) for i, _, a in kids] == [
        (0, Decimal("0.133333334")),
        (1, Decimal("0.133333333")),
    ]
    assert row(session, parent_id)["next_slice"] == 2


def test_a_parent_ends_with_what_its_children_filled(session, test_settings):
    parent_id = parent(session, NOW, slices=2, interval_s=1, amount="2")
    service, _ = scheduler(session, test_settings, NOW + timedelta(seconds=1))
    service.evaluate()
    with session.begin():
        session.execute(
            text(
                "UPDATE orders SET status = CASE WHEN slice_index = 0 THEN 'confirmed' ELSE "
                "'failed' END, amount_out = 300 WHERE parent_id = :p"
            ),
            {"p": parent_id},
        )
    assert service.evaluate().ended == 1
    ended = row(session, parent_id)
    assert (ended["status"], ended["failure_code"], ended["waiting"]) == (
        "failed",
        "TWAP_PARTIALLY_FILLED",
        False,
    )
    assert (ended["amount_in_filled"], ended["amount_out"]) == (Decimal(1), Decimal(300))
    assert ended["failure_reason"] == "1 of 2 slices filled (1 not: 1 failed); 1 left"


def test_a_slice_the_market_leaves_before_its_swap_waits_like_a_triggered_limit(rig):  # noqa: F811
    """A child carries its parent's limit as its floor and its trigger price: the executor
    quotes below it, builds nothing and puts the child back to waiting, within its checks."""
    service, _chain, node, clock, session = rig
    parent_id = parent(session, NOW, limit_price=Decimal("10000"))
    with session.begin():
        child = add_order(
            session,
            first_event={},
            parent_id=parent_id,
            slice_index=0,
            amount_in=Decimal("0.1"),
            limit_price=Decimal("10000"),
            trigger_price=Decimal("10000"),
            expires_at=NOW + timedelta(seconds=40),
        )
    assert service.execute(child.id, "test:limit") == Outcome.REARMED
    waiting = row(session, child.id)
    assert (waiting["status"], waiting["waiting"], waiting["tx_hash"]) == ("pending", True, None)
    with session.begin():
        last = session.execute(
            text("SELECT data FROM order_events WHERE order_id = :id ORDER BY seq DESC LIMIT 1"),
            {"id": child.id},
        ).scalar_one()
    assert last["waitingFor"] == {"limitPrice": "10000"}
