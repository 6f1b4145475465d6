import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from order_engine.domain.status import OrderStatus
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.transitions import Step, Transition
from tests.support.factories import build_order

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(db_session: Session) -> OrderRepository:
    return OrderRepository(db_session)


def test_transition_moves_the_status_and_appends_the_next_seq(repo):
    order = repo.add(build_order())
    repo.append_first_event(order, {})
    event = repo.transition(
        order.id, OrderStatus.PENDING, OrderStatus.ROUTING, event_data={"why": "test"}
    )
    assert (event.seq, event.status) == (2, "routing")
    assert repo.get(order.id).status == "routing"
    assert [e.seq for e in repo.events(order.id)] == [1, 2]


def test_transition_from_the_wrong_status_changes_nothing(repo):
    order = repo.add(build_order(status="confirmed", last_seq=5))
    assert (
        repo.transition(order.id, OrderStatus.PENDING, OrderStatus.ROUTING, event_data={}) is None
    )
    reloaded = repo.get(order.id)
    assert (reloaded.status, reloaded.last_seq) == ("confirmed", 5)
    assert repo.events(order.id) == []


def test_transitions_take_several_steps_in_one_statement_with_an_event_each(repo):
    order = repo.add(build_order(lease_owner="worker-a"))
    repo.append_first_event(order, {})
    steps = [
        Step(OrderStatus.ROUTING, {"step": "routed"}, {"dex": "raydium", "route": {"legs": 1}}),
        Step(OrderStatus.BUILDING, {"step": "built"}, {"route": {"legs": 2}, "tx_hash": "sig"}),
    ]
    events = repo.apply(Transition.of(order.id, OrderStatus.PENDING, steps, lease_owner="worker-a"))
    assert [(e.seq, e.status, e.data) for e in events] == [
        (2, "routing", {"step": "routed"}),
        (3, "building", {"step": "built"}),
    ]
    reloaded = repo.get(order.id)
    # Both steps' columns are set; where two steps set one column, the later step's value wins.
    assert (reloaded.status, reloaded.last_seq) == ("building", 3)
    assert (reloaded.dex, reloaded.route, reloaded.tx_hash) == ("raydium", {"legs": 2}, "sig")
    stored = [(e.seq, e.status, e.data) for e in repo.events(order.id)]
    assert stored == [
        (1, "pending", {}),
        (2, "routing", {"step": "routed"}),
        (3, "building", {"step": "built"}),
    ]


def test_transitions_refused_by_their_first_condition_write_nothing(repo):
    order = repo.add(build_order(lease_owner="worker-a"))
    repo.append_first_event(order, {})
    steps = [Step(OrderStatus.ROUTING, {}), Step(OrderStatus.BUILDING, {})]
    refused = Transition.of(order.id, OrderStatus.PENDING, steps, lease_owner="worker-b")
    assert repo.apply(refused) is None
    reloaded = repo.get(order.id)
    assert (reloaded.status, reloaded.last_seq) == ("pending", 1)
    assert [e.seq for e in repo.events(order.id)] == [1]


def test_transition_checks_the_lease_owner(repo):
    order = repo.add(build_order(lease_owner="worker-a"))
    assert (
        repo.transition(
            order.id,
            OrderStatus.PENDING,
            OrderStatus.ROUTING,
            event_data={},
            lease_owner="worker-b",
        )
        is None
    )
    assert (
        repo.transition(
            order.id,
            OrderStatus.PENDING,
            OrderStatus.ROUTING,
            event_data={},
            lease_owner="worker-a",
        )
        is not None
    )


def test_claim_takes_a_free_lease_once_and_counts_the_attempt(repo):
    order = repo.add(build_order())
    claimed = repo.claim(order.id, "worker-a", lease_s=30)
    assert (claimed.lease_owner, claimed.attempts) == ("worker-a", 1)
    assert repo.claim(order.id, "worker-b", lease_s=30) is None


def test_claim_takes_over_an_expired_lease(repo, db_session):
    order = repo.add(build_order())
    repo.claim(order.id, "worker-a", lease_s=30)
    db_session.execute(
        text("UPDATE orders SET lease_until = now() - interval '1 second' WHERE id = :id"),
        {"id": order.id},
    )
    taken = repo.claim(order.id, "worker-b", lease_s=30)
    assert (taken.lease_owner, taken.attempts) == ("worker-b", 2)


def test_concurrent_transitions_let_exactly_one_writer_win(engine, clean_tables):
    with Session(engine) as session, session.begin():
        order_id = OrderRepository(session).add(build_order()).id
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        with Session(engine) as session, session.begin():
            barrier.wait()
            event = OrderRepository(session).transition(
                order_id, OrderStatus.PENDING, OrderStatus.ROUTING, event_data={}
            )
            results.append(event is not None)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.parametrize("amount", ["NaN", "0", "-1"])
def test_database_refuses_non_positive_or_nan_amounts(db_session, amount):
    with pytest.raises(IntegrityError, match="ck_orders_amount_in_positive"):
        db_session.execute(
            text(
                "INSERT INTO orders (id, type, status, token_in, token_out, amount_in,"
                " slippage_bps, last_seq, attempts, deliveries) VALUES (gen_random_uuid(),"
                " 'market', 'pending', 'SOL', 'USDC', CAST(:amount AS numeric), 50, 0, 0, 0)"
            ),
            {"amount": amount},
        )


def test_event_seq_is_unique_per_order(repo, db_session):
    order = repo.add(build_order())
    repo.append_first_event(order, {})
    with pytest.raises(IntegrityError, match="uq_order_events_order_id_seq"):
        db_session.execute(
            text(
                "INSERT INTO order_events (order_id, seq, status, attempt, data)"
                " VALUES (:id, 1, 'pending', 0, '{}')"
            ),
            {"id": order.id},
        )
