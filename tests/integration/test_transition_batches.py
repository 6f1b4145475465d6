"""Transitions committed on their own (`TransitionCommitter`, the executor's way) on committed
rows: those of different orders that meet in flight run as one statement, each order's
compare-and-set still its own."""

import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, delete, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from order_engine.domain.status import OrderStatus
from order_engine.infra.db import make_engine
from order_engine.models import Order, OrderEvent
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.transitions import (
    Step,
    Transition,
    TransitionCommitter,
    lease_expiry,
)
from tests.support.factories import build_order
from tests.support.statements import statements_sent
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def committed(database_url) -> Iterator[tuple[Engine, list[uuid.UUID]]]:
    """An engine whose sessions commit, and the ids of the orders a test makes (deleted after)."""
    engine = make_engine(database_url, pool_size=8)
    made: list[uuid.UUID] = []
    yield engine, made
    with Session(engine) as session, session.begin():
        session.execute(delete(OrderEvent).where(OrderEvent.order_id.in_(made)))
        session.execute(delete(Order).where(Order.id.in_(made)))
    engine.dispose()


def make_orders(engine: Engine, made: list[uuid.UUID], count: int, **overrides) -> list[Order]:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        repository = OrderRepository(session)
        orders = []
        for _ in range(count):
            order = repository.add(build_order(**{"lease_owner": "worker-a", **overrides}))
            repository.append_first_event(order, {})
            orders.append(order)
    made.extend(order.id for order in orders)
    return orders


def transition_in_thread(engine, order_id, steps, results, owner="worker-a", claim=None):
    def run():
        try:
            results[order_id] = TransitionCommitter(engine).commit(
                Transition.of(
                    order_id,
                    OrderStatus.PENDING,
                    steps(order_id),
                    lease_owner=owner,
                    claim_lease_s=claim,
                )
            )
        except Exception as exc:  # the test looks at it
            results[order_id] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def row_of(engine, order_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status, last_seq, dex, tx_hash, lease_owner FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()


def events_of(engine, order_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT seq, status, data FROM order_events WHERE order_id = :id ORDER BY seq"),
            {"id": order_id},
        ).all()


def held_then_batched(engine, first, others, steps, **kwargs):
    """Transition `first` while its row is locked elsewhere, so that its batch waits; queue the
    `others` meanwhile; release. Returns each order's result and the statements sent."""
    results: dict[uuid.UUID, object] = {}
    batches = TransitionCommitter(engine)
    with statements_sent() as sent:
        with engine.connect() as locker:
            locker.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": first})
            threads = [transition_in_thread(engine, first, steps, results, **kwargs)]
            wait_until(
                lambda: locker.execute(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ).scalar(),
                timeout_s=5,
                what="the first batch to wait for the row lock",
            )
            threads += [
                transition_in_thread(engine, order_id, steps, results, **kwargs)
                for order_id in others
            ]
            wait_until(lambda: batches.queued() == len(others), 5, "the others to queue")
            locker.rollback()
        for thread in threads:
            thread.join(10)
    return results, [s.sql for s in sent if "UPDATE orders" in s.sql]


def quoted(order_id):
    # Whole numbers and decimals for one numeric column, as callers may pass them.
    return 2 if order_id.int % 2 else Decimal("2.5")


def route_and_build(order_id):
    return [
        Step(
            OrderStatus.ROUTING,
            {"routed": str(order_id)},
            {"dex": "raydium", "quoted_amount_out": quoted(order_id)},
        ),
        Step(
            OrderStatus.BUILDING,
            {"built": str(order_id)},
            {"tx_hash": f"sig-{order_id}", "lease_until": lease_expiry(60)},
        ),
    ]


def test_transitions_that_meet_in_flight_are_one_statement_with_each_orders_own_values(
    committed,
):
    engine, made = committed
    first, *others = [order.id for order in make_orders(engine, made, 6)]
    results, updates = held_then_batched(engine, first, others, route_and_build)
    assert len(updates) == 2  # the held one alone, then the five others together
    assert "unnest" in updates[1]
    for order_id in [first, *others]:
        events = results[order_id]
        assert [(e.seq, e.status, e.data) for e in events] == [
            (2, "routing", {"routed": str(order_id)}),
            (3, "building", {"built": str(order_id)}),
        ]
        assert row_of(engine, order_id) == ("building", 3, "raydium", f"sig-{order_id}", "worker-a")
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT quoted_amount_out FROM orders WHERE id = :id"), {"id": order_id}
            ).scalar()
        assert stored == quoted(order_id)
        assert [(seq, status) for seq, status, _ in events_of(engine, order_id)] == [
            (1, "pending"),
            (2, "routing"),
            (3, "building"),
        ]


def test_in_a_batch_an_order_whose_check_fails_is_left_alone_and_the_others_move(committed):
    engine, made = committed
    first, *others = [order.id for order in make_orders(engine, made, 4)]
    (stolen,) = [order.id for order in make_orders(engine, made, 1, lease_owner="worker-b")]
    results, updates = held_then_batched(engine, first, [*others, stolen], route_and_build)
    assert len(updates) == 2
    assert results[stolen] is None
    assert row_of(engine, stolen) == ("pending", 1, None, None, "worker-b")
    assert [seq for seq, _, _ in events_of(engine, stolen)] == [1]
    assert all(len(results[order_id]) == 2 for order_id in [first, *others])


def test_one_order_twice_in_a_batch_moves_once(committed):
    engine, made = committed
    first, twice = [
        order.id for order in make_orders(engine, made, 2, lease_owner=None, attempts=0)
    ]

    def claim_and_route(order_id):
        return [Step(OrderStatus.ROUTING, {"by": threading.current_thread().name})]

    results: dict[uuid.UUID, object] = {}
    batches = TransitionCommitter(engine)
    with engine.connect() as locker:
        locker.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": first})
        held = transition_in_thread(
            engine, first, claim_and_route, results, owner="worker-a", claim=60
        )
        wait_until(
            lambda: locker.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar(),
            5,
            "the first batch to wait for the row lock",
        )
        copies: list[object] = []
        threads = []
        for owner in ("worker-b", "worker-c"):  # the same order delivered twice

            def run(owner=owner):
                copies.append(
                    TransitionCommitter(engine).commit(
                        Transition.of(
                            twice,
                            OrderStatus.PENDING,
                            claim_and_route(twice),
                            lease_owner=owner,
                            claim_lease_s=60,
                        )
                    )
                )

            threads.append(threading.Thread(target=run))
            threads[-1].start()
        wait_until(lambda: batches.queued() == 2, 5, "both copies to queue")
        locker.rollback()
    for thread in [held, *threads]:
        thread.join(10)
    won = [events for events in copies if events is not None]
    assert len(won) == 1
    assert copies.count(None) == 1
    assert [e.seq for e in won[0]] == [2]
    status, last_seq, _, _, owner = row_of(engine, twice)
    assert (status, last_seq) == ("routing", 2)
    assert owner in ("worker-b", "worker-c")
    assert [seq for seq, _, _ in events_of(engine, twice)] == [1, 2]


def test_an_order_that_fails_a_batched_statement_fails_alone(committed):
    engine, made = committed
    first, *others = [order.id for order in make_orders(engine, made, 4)]

    def same_signature_for_two(order_id):
        # Two orders claiming one transaction: the unique tx_hash refuses the second.
        signature = "sig-shared" if order_id in (others[0], others[1]) else f"sig-{order_id}"
        return [
            Step(OrderStatus.ROUTING, {}, {"dex": "raydium", "tx_hash": signature}),
        ]

    results, updates = held_then_batched(engine, first, others, same_signature_for_two)
    assert "unnest" in updates[1]  # refused as a whole, then each order alone
    failed = [order_id for order_id in others if isinstance(results[order_id], IntegrityError)]
    assert len(failed) == 1
    assert failed[0] in (others[0], others[1])
    for order_id in [first, *others]:
        if order_id not in failed:
            assert row_of(engine, order_id)[0] == "routing"
    assert row_of(engine, failed[0])[:2] == ("pending", 1)
