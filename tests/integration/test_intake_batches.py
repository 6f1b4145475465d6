"""Intake statements of concurrent requests that meet in flight run as one statement: each
order inserted with its first event, an Idempotency-Key taken once, the in-flight cap counted
as if the requests had come one after the other."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, delete, text
from sqlalchemy.orm import Session

from order_engine.infra.db import make_engine
from order_engine.models import Account, Order, OrderEvent
from order_engine.repositories.intake import Intake, IntakeCommitter
from tests.support.factories import add_account, build_order
from tests.support.statements import statements_sent
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def account(database_url) -> Iterator[tuple[Engine, uuid.UUID]]:
    """An engine whose sessions commit and a new account; its orders are deleted after."""
    engine = make_engine(database_url, pool_size=8)
    with Session(engine) as session, session.begin():
        account_id = add_account(session).id
    yield engine, account_id
    with Session(engine) as session, session.begin():
        ids = [
            row[0]
            for row in session.execute(
                text("SELECT id FROM orders WHERE account_id = :a"), {"a": account_id}
            )
        ]
        session.execute(delete(OrderEvent).where(OrderEvent.order_id.in_(ids)))
        session.execute(delete(Order).where(Order.id.in_(ids)))
        session.execute(delete(Account).where(Account.id == account_id))
    engine.dispose()


def new_order(account_id: uuid.UUID, key: str | None, *, waiting: bool = False) -> Order:
    if not waiting:
        return build_order(
            account_id=account_id, idempotency_key=key, amount_in=Decimal("2"), waiting=False
        )
    limit = Decimal("1000000")  # a limit order that waits for it
    return build_order(
        account_id=account_id,
        idempotency_key=key,
        amount_in=Decimal("2"),
        type="limit",
        limit_price=limit,
        trigger_price=limit,
        waiting=True,
    )


def insert_in_thread(engine, order, results, far=None):
    """`far`: the cap's `far` for every order, or a function of the order giving its own."""
    if callable(far):
        far = far(order)

    def run():
        intake = IntakeCommitter(engine)  # as the API submits: committed now, batched
        now = datetime.now(UTC)
        try:
            if far is None:
                inserted = intake.insert_with_first_event(order, order.idempotency_key, now, "{}")
                results[order.id] = Intake.INSERTED if inserted else Intake.KEY_TAKEN
            else:
                results[order.id] = intake.insert_unless_near_cap(
                    order, order.idempotency_key, now, "{}", far
                )
        except Exception as exc:  # the test looks at it
            results[order.id] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def held_then_batched(engine, account_id, first, others, far=None):
    """Insert `first` while another transaction holds its Idempotency-Key (so its statement
    waits), queue `others` meanwhile, then let go. Each order's outcome, and the INSERTs sent."""
    results: dict[uuid.UUID, object] = {}
    batches = IntakeCommitter(engine)
    with statements_sent() as sent:
        with Session(engine) as holder:
            holder.add(new_order(account_id, first.idempotency_key))
            holder.flush()  # the key is taken, uncommitted
            threads = [insert_in_thread(engine, first, results, far)]
            wait_until(
                lambda: holder.execute(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ).scalar(),
                5,
                "the first statement to wait for the key",
            )
            threads += [insert_in_thread(engine, order, results, far) for order in others]
            wait_until(lambda: batches.queued() == len(others), 5, "the others to queue")
            holder.rollback()
        for thread in threads:
            thread.join(10)
    return results, [s.sql for s in sent if s.sql.startswith("WITH")]  # not the holder's


def stored(engine, order_id):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT o.status, o.last_seq, e.seq, e.status FROM orders o"
                " JOIN order_events e ON e.order_id = o.id WHERE o.id = :id"
            ),
            {"id": order_id},
        ).all()


def test_concurrent_requests_are_one_insert_and_a_key_is_taken_once(account):
    engine, account_id = account
    first = new_order(account_id, "first")
    twice = [new_order(account_id, "retried"), new_order(account_id, "retried")]
    plain = [new_order(account_id, None), new_order(account_id, "other")]
    results, inserts = held_then_batched(engine, account_id, first, [*plain, *twice])
    assert len(inserts) == 2  # the held one alone, then the four others together
    assert "unnest" in inserts[1]
    assert results[first.id] is Intake.INSERTED  # the holder let its key go
    for order in plain:
        assert results[order.id] is Intake.INSERTED
        assert stored(engine, order.id) == [("pending", 1, 1, "pending")]
    assert sorted(results[order.id].value for order in twice) == ["inserted", "key taken"]
    taken = next(order for order in twice if results[order.id] is Intake.KEY_TAKEN)
    assert stored(engine, taken.id) == []


def test_a_batch_counts_its_own_orders_against_the_in_flight_cap(account):
    engine, account_id = account
    with Session(engine) as session, session.begin():
        session.add(new_order(account_id, "unfinished-1"))
        session.add(new_order(account_id, "unfinished-2"))
    first = new_order(account_id, "first")
    others = [new_order(account_id, f"k{n}") for n in range(4)]
    far = 5  # 2 unfinished + the first = 3: two more fit
    results, inserts = held_then_batched(engine, account_id, first, others, far=far)
    assert len(inserts) == 2
    assert results[first.id] is Intake.INSERTED
    outcomes = [results[order.id] for order in others]
    assert sorted(outcome.value for outcome in outcomes) == [
        "inserted",
        "inserted",
        "near cap",
        "near cap",
    ]
    with engine.connect() as conn:
        unfinished = conn.execute(
            text("SELECT count(*) FROM orders WHERE account_id = :a"), {"a": account_id}
        ).scalar()
    assert unfinished == far


def test_a_waiting_order_is_counted_against_waiting_orders_only(account):
    engine, account_id = account
    with Session(engine) as session, session.begin():
        session.add_all(new_order(account_id, f"running-{n}") for n in range(3))
    waits = new_order(account_id, "waits", waiting=True)
    outcome = IntakeCommitter(engine).insert_unless_near_cap(
        waits, waits.idempotency_key, datetime.now(UTC), "{}", 2
    )
    assert outcome is Intake.INSERTED  # 3 orders in flight, none waiting: far from 2


def test_a_batch_counts_waiting_orders_apart_from_orders_in_flight(account):
    engine, account_id = account
    with Session(engine) as session, session.begin():
        session.add_all(new_order(account_id, f"running-{n}") for n in range(2))
        session.add_all(new_order(account_id, f"waiting-{n}", waiting=True) for n in range(3))
    first = new_order(account_id, "first")
    running = [new_order(account_id, f"r{n}") for n in range(3)]
    waiting = [new_order(account_id, f"w{n}", waiting=True) for n in range(2)]
    # In flight: 2 + the first = 3, one more fits under 4; waiting: 3, two more fit under 5.
    results, inserts = held_then_batched(
        engine,
        account_id,
        first,
        [*running, *waiting],
        far=lambda order: 5 if order.waiting else 4,
    )
    assert len(inserts) == 2  # the held one alone, then the five others together
    assert results[first.id] is Intake.INSERTED
    assert sorted(results[order.id].value for order in running) == [
        "inserted",
        "near cap",
        "near cap",
    ]
    assert [results[order.id] for order in waiting] == [Intake.INSERTED, Intake.INSERTED]
