"""The executor's transitions on the path a worker takes: its session bound to an engine, each
step committed at once on a pooled autocommit connection (`TransitionCommitter`), and the steps
of orders in flight together batched into one statement. Real PostgreSQL (committed rows,
emptied after by `clean_tables`) and the session's localnet over JSON-RPC."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from order_engine.config import Settings
from order_engine.repositories.transitions import TransitionCommitter
from order_engine.services.execution import ExecutionService, Outcome
from order_engine.services.resources import ChainResources, build_chain_resources
from order_engine.services.task_copy import task_copy
from tests.support.factories import add_order
from tests.support.statements import statements_sent
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

HAPPY_PATH = ["pending", "routing", "building", "submitted", "confirmed"]


class CommittedWhenPublished:
    """A publisher that looks, from a connection of its own, at the row of each event it is
    given: a step committed at once is there before its event goes out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[int, int]] = []  # (the event's seq, the committed row's last_seq)
        self.lock = threading.Lock()

    def publish(self, payload: dict[str, Any]) -> bool:
        return self.publish_many([payload])

    def publish_many(self, payloads: list[dict[str, Any]]) -> bool:
        with self.engine.connect() as conn:
            for payload in payloads:
                (last_seq,) = conn.execute(
                    text("SELECT last_seq FROM orders WHERE id = :id"),
                    {"id": uuid.UUID(payload["orderId"])},
                ).one()
                with self.lock:
                    self.seen.append((payload["seq"], last_seq))
        return True


@pytest.fixture
def worker(test_settings, clean_tables) -> tuple[Settings, ChainResources]:
    """What a worker process runs the executor with: its settings and chain resources."""
    settings = Settings.from_env(test_settings)
    return settings, build_chain_resources(settings)


def executor(engine: Engine, worker, publisher: CommittedWhenPublished) -> ExecutionService:
    """An executor on a session of its own, bound to the engine, as a worker's task gets one."""
    settings, chain = worker
    session = Session(engine, expire_on_commit=False)
    return ExecutionService(session, chain.router, chain.chain, chain.wallet, publisher, settings)


def committed_orders(engine: Engine, count: int, memo: str) -> list[tuple[uuid.UUID, dict]]:
    """New market orders as intake commits them, each with the copy its first task carries."""
    made = []
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for index in range(count):
            order = add_order(
                session,
                first_event={},
                amount_in=Decimal("0.5") + Decimal(index) / 100,
                client_order_id=f"{memo}-{index}",
                created_at=datetime.now(UTC),
                last_seq=0,
            )
            made.append((order.id, task_copy(order)))
    return made


def committed_lifecycle(engine: Engine, order_id: uuid.UUID) -> tuple[list[str], tuple]:
    """The order's events and counters as another connection sees them: committed."""
    with engine.connect() as conn:
        statuses = conn.scalars(
            text("SELECT status FROM order_events WHERE order_id = :id ORDER BY seq"),
            {"id": order_id},
        ).all()
        row = conn.execute(
            text("SELECT status, attempts, deliveries, lease_owner FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()
    return list(statuses), tuple(row)


def test_each_step_is_committed_on_its_own_before_its_events_go_out(engine, worker):
    publisher = CommittedWhenPublished(engine)
    service = executor(engine, worker, publisher)
    [(order_id, copy)] = committed_orders(engine, 1, "alone")
    with statements_sent() as sent:
        assert service.execute(order_id, "worker-alone", copy) == Outcome.CONFIRMED
    service.session.close()
    steps = [s for s in sent if "INSERT INTO order_events" in s.sql]
    # routing + building (claiming the order), submitted, confirmed: a statement each, each on
    # an autocommit connection that had no transaction open once it had run.
    assert len(steps) == 3
    assert all(s.autocommit and s.idle_after for s in steps)
    assert [seq for seq, _ in publisher.seen] == [2, 3, 4, 5]
    assert all(committed >= seq for seq, committed in publisher.seen)
    assert committed_lifecycle(engine, order_id) == (HAPPY_PATH, ("confirmed", 1, 1, None))


def test_the_steps_of_orders_in_flight_together_commit_as_one_statement(engine, worker):
    publisher = CommittedWhenPublished(engine)
    (first, first_copy), *others = committed_orders(engine, 5, "together")
    outcomes: dict[uuid.UUID, object] = {}

    def run(order_id: uuid.UUID, copy: dict) -> None:
        service = executor(engine, worker, publisher)
        try:
            outcomes[order_id] = service.execute(order_id, f"worker-{order_id.hex[:6]}", copy)
        except Exception as exc:  # the test looks at it
            outcomes[order_id] = exc
        finally:
            service.session.close()

    committer = TransitionCommitter(engine)
    with statements_sent() as sent:
        with engine.connect() as locker:
            # The first order's claiming step waits on its row, holding its batch in flight:
            # the other orders' claiming steps (one shape) queue meanwhile, then go together.
            locker.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": first})
            threads = [threading.Thread(target=run, args=(first, first_copy))]
            threads[0].start()
            wait_until(
                lambda: locker.execute(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ).scalar(),
                10,
                "the first order's step to wait for its row",
            )
            threads += [threading.Thread(target=run, args=other) for other in others]
            for thread in threads[1:]:
                thread.start()
            wait_until(lambda: committer.queued() == len(others), 10, "the others to queue")
            locker.rollback()
        for thread in threads:
            thread.join(60)
    assert outcomes == {order_id: Outcome.CONFIRMED for order_id in outcomes}
    assert len(outcomes) == 5
    claims = [s for s in sent if "INSERT INTO order_events" in s.sql and "attempts + 1" in s.sql]
    assert ["unnest" in s.sql for s in claims] == [False, True]  # the held one, then four
    assert all(s.autocommit and s.idle_after for s in sent if "INSERT INTO order_events" in s.sql)
    assert all(committed >= seq for seq, committed in publisher.seen)
    for order_id in [first, *(order_id for order_id, _ in others)]:
        assert committed_lifecycle(engine, order_id) == (HAPPY_PATH, ("confirmed", 1, 1, None))


def test_an_executor_on_a_session_bound_to_a_connection_is_refused(engine, db_session, worker):
    """A rolled-back test session cannot commit a step on its own: the executor says so rather
    than quietly running its steps inside that session's transaction."""
    settings, chain = worker
    with pytest.raises(TypeError, match="bound to a connection"):
        ExecutionService(
            db_session,
            chain.router,
            chain.chain,
            chain.wallet,
            CommittedWhenPublished(engine),
            settings,
        )
