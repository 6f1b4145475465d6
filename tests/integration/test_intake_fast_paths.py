"""Intake's and streaming's fast paths do what the slower paths they replace did; the
reconciler reads the direct sender's queue to tell a backlog from a lost message."""

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from order_engine.api.intake import order_service, parse_order_body
from order_engine.app import create_app
from order_engine.errors import OrderEngineError, TooManyRequestsError, UnprocessableError
from order_engine.infra.db import get_engine
from order_engine.models import DEFAULT_ACCOUNT_ID, Order
from order_engine.repositories.intake import IntakeCommitter
from order_engine.services.order import IN_FLIGHT_SLACK, SubmittedOrder
from order_engine.services.reconciler import ReconcilerService
from order_engine.tasking import dispatch
from order_engine.tasking.app import is_amqp
from tests.support import brokers
from tests.support.factories import add_order, build_order
from tests.support.statements import Sent, statements_sent
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

VALID = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
VOLATILE_HEADERS = {"id", "root_id"}
VOLATILE_PROPERTIES = {"correlation_id", "delivery_tag"}
VOLATILE_EVENT_FIELDS = {"uuid", "root_id", "timestamp", "clock"}


def _decode(raw: bytes) -> dict:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def _without(mapping: dict, keys: set[str]) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}


# A broker database no worker of the test session consumes (the live stacks' workers would
# take the messages these tests read back).
PRIVATE_BROKER_DB = 11


@pytest.fixture
def test_settings(test_settings):
    if is_amqp(test_settings["CELERY_BROKER_URL"]):
        return test_settings
    broker_url = test_settings["CELERY_BROKER_URL"].rsplit("/", 1)[0] + f"/{PRIVATE_BROKER_DB}"
    return {**test_settings, "CELERY_BROKER_URL": broker_url}


@pytest.fixture
def broker(test_settings):
    if is_amqp(test_settings["CELERY_BROKER_URL"]):
        pytest.skip("the direct sender writes to a Redis broker only (RabbitMQ: send_task)")
    client = redis.Redis.from_url(test_settings["CELERY_BROKER_URL"])
    client.delete("orders")
    yield client
    client.delete("orders")
    client.close()


def direct_sender(app):
    """The app's direct task sender; the test is skipped where the overrides are off (then
    Celery sends, and `test_intake_queues_one_task_for_its_order` covers that)."""
    if not brokers.CELERY_OVERRIDES:
        pytest.skip("the direct task sender is one of the Celery overrides, which are off")
    sender = dispatch.task_sender(app.extensions["celery"])
    assert sender is not None
    return sender


def test_direct_sender_writes_the_task_and_event_celery_writes(test_settings, broker):
    app = create_app({**test_settings, "TASK_EVENTS": "true"})  # `task-sent` is written too
    celery_app = app.extensions["celery"]
    sender = direct_sender(app)
    events = broker.pubsub()
    events.psubscribe(sender.event_topic)
    assert events.get_message(timeout=2)["type"] == "psubscribe"
    kwargs = {"order_id": str(uuid.uuid4())}
    with app.app_context():
        celery_app.send_task(dispatch.EXECUTE_ORDER, kwargs=kwargs)
        sender.send(dispatch.EXECUTE_ORDER, kwargs)
    by_celery, by_sender = (_decode(m) for m in reversed(broker.lrange("orders", 0, -1)))
    assert by_sender["body"] == by_celery["body"]
    assert _without(by_sender["headers"], VOLATILE_HEADERS) == _without(
        by_celery["headers"], VOLATILE_HEADERS
    )
    assert by_sender["headers"]["root_id"] == by_sender["headers"]["id"]
    assert _without(by_sender["properties"], VOLATILE_PROPERTIES) == _without(
        by_celery["properties"], VOLATILE_PROPERTIES
    )
    assert _without(by_sender, {"body", "headers", "properties"}) == _without(
        by_celery, {"body", "headers", "properties"}
    )
    sent = [events.get_message(timeout=2) for _ in range(2)]
    events.close()
    assert [m["channel"] for m in sent] == [sender.event_topic.encode()] * 2
    celery_event, sender_event = (_decode(m["data"]) for m in sent)
    assert sender_event["body"]["uuid"] == by_sender["headers"]["id"]
    assert _without(sender_event["body"], VOLATILE_EVENT_FIELDS) == _without(
        celery_event["body"], VOLATILE_EVENT_FIELDS
    )
    assert _without(sender_event["properties"], {"delivery_tag"}) == _without(
        celery_event["properties"], {"delivery_tag"}
    )
    assert sender_event["headers"] == celery_event["headers"]


def test_no_task_sent_event_unless_task_events_are_on(app, broker):
    sender = direct_sender(app)
    events = broker.pubsub()
    events.psubscribe(sender.event_topic)
    assert events.get_message(timeout=2)["type"] == "psubscribe"
    with app.app_context():
        sender.send(dispatch.EXECUTE_ORDER, {"order_id": str(uuid.uuid4())})
    assert broker.llen("orders") == 1
    assert events.get_message(timeout=0.5) is None  # the default: Flower turns events on
    events.close()


def test_a_batch_queues_one_task_per_order_in_order(app, broker):
    order_ids = [uuid.uuid4() for _ in range(3)]
    with app.app_context():
        dispatch.enqueue_execute_orders(order_ids)
    queued = [_decode(raw) for raw in reversed(broker.lrange("orders", 0, -1))]
    assert [m["body"][1] for m in queued] == [{"order_id": str(o)} for o in order_ids]
    assert {m["headers"]["task"] for m in queued} == {dispatch.EXECUTE_ORDER}
    assert len({m["headers"]["id"] for m in queued}) == 3


def test_intake_queues_one_task_for_its_order(client, broker):
    response = client.post("/api/orders/execute", json=VALID)
    assert response.status_code == 202
    (raw,) = broker.lrange("orders", 0, -1)
    message = _decode(raw)
    assert message["headers"]["task"] == dispatch.EXECUTE_ORDER
    kwargs = message["body"][1]
    assert kwargs["order_id"] == response.get_json()["orderId"]
    # The copy of the new market order its executor routes from before touching the row.
    copy = kwargs["order"]
    assert (copy["tokenIn"], copy["tokenOut"], copy["amount"]) == ("SOL", "USDC", "1.5")
    assert copy["accountId"] == str(DEFAULT_ACCOUNT_ID)


def test_history_tells_an_unknown_order_from_one_without_later_events(app, client):
    order_id = uuid.UUID(client.post("/api/orders/execute", json=VALID).get_json()["orderId"])
    with app.test_request_context():
        service = order_service()
        (pending,) = service.history(order_id)
        assert service.history(order_id, after_seq=1) == []
        assert service.history(uuid.uuid4()) is None
        assert service.events_after(uuid.uuid4(), 0) == []
    assert (pending["seq"], pending["status"], pending["attempt"]) == (1, "pending", 0)
    assert pending["data"]["amount"] == "1.5"
    assert pending == client.get(f"/api/orders/{order_id}").get_json()["events"][0]


def test_a_stream_opening_on_an_active_order_replays_its_live_record_without_a_query(app, client):
    order_id = uuid.UUID(client.post("/api/orders/execute", json=VALID).get_json()["orderId"])
    with app.test_request_context():
        service = order_service()
        from_database = service.history(order_id)
        with statements_sent() as statements:
            replayed = service.opening_history(order_id, 0, DEFAULT_ACCOUNT_ID)
            assert statements == []  # Redis answered
            assert service.opening_history(order_id, 1, None) == []  # an admin's, resumed
            assert statements == []
            assert service.opening_history(order_id, 0, uuid.uuid4()) is None  # not theirs
            assert len(statements) == 1  # the database said so
    assert replayed == from_database
    assert [e["status"] for e in replayed] == ["pending"]


# -- intake's one statement ------------------------------------------------------------------

CAP = 200  # the shipped MAX_ORDERS_IN_FLIGHT; far from it is the common case


class Ran(Sent):
    @property
    def counted_insert(self) -> bool:
        return self.sql.startswith("WITH unfinished")

    @property
    def locked(self) -> bool:
        return "pg_advisory_xact_lock" in self.sql


@contextmanager
def statements_run() -> Iterator[list[Ran]]:
    """The statements sent meanwhile (tests/support/statements.py), as intake's."""
    ran: list[Ran] = []
    with statements_sent() as sent:
        yield ran
    ran.extend(Ran(s.sql, s.autocommit, s.idle_after) for s in sent)


def submit(account_id: uuid.UUID, cap: int, key: str | None = None, **change) -> SubmittedOrder:
    """What intake does with a valid body (VALID, changed by `change`), for `account_id`."""
    body = parse_order_body(json.dumps({**VALID, **change}))
    return order_service().submit(body, key, account_id=account_id, max_in_flight=cap)


def pending_orders(session: Session, account_id: uuid.UUID) -> int:
    with session.begin():
        return session.scalar(
            select(func.count()).where(Order.account_id == account_id, Order.status == "pending")
        )


@pytest.fixture
def committed_account(engine) -> Iterator[uuid.UUID]:
    """A new account for tests whose app runs on its own engine (the units of work commit for
    real, on autocommit connections): its orders and itself are deleted after."""
    account_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts (id, name) VALUES (:id, :name)"),
            {"id": account_id, "name": f"intake-{account_id.hex[:12]}"},
        )
    yield account_id
    with engine.begin() as conn:
        for statement in (
            "DELETE FROM order_events WHERE order_id IN "
            "(SELECT id FROM orders WHERE account_id = :id)",
            "DELETE FROM orders WHERE account_id = :id",
            "DELETE FROM accounts WHERE id = :id",
        ):
            conn.execute(text(statement), {"id": account_id})


@pytest.mark.parametrize("cap", [CAP, 0], ids=["capped", "no-cap"])
def test_far_from_the_cap_a_submission_is_one_statement_outside_any_transaction(
    test_settings, redis_client, engine, committed_account, cap
):
    app = create_app(test_settings)  # its own engine, as in production: autocommit applies
    with app.test_request_context():
        submit(committed_account, cap)  # the pool's first connection is not what is measured
    with app.test_request_context(), statements_run() as ran:
        submitted = submit(committed_account, cap)
    (only,) = ran  # before: BEGIN, the count, the insert, COMMIT (no count without a cap)
    assert only.autocommit
    assert only.idle_after
    assert only.counted_insert == bool(cap)
    assert ("count(*)" in only.sql) == bool(cap)
    assert submitted.created
    # Committed by then: another connection sees the order with its first event.
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.status, e.seq, e.status FROM orders o JOIN order_events e "
                "ON e.order_id = o.id WHERE o.id = :id"
            ),
            {"id": submitted.order.id},
        ).all()
    assert [tuple(row) for row in rows] == [("pending", 1, "pending")]


def test_near_the_cap_the_locked_path_counts_again_and_refuses_at_it(app, db_session):
    cap = IN_FLIGHT_SLACK + 2  # `far` is 2: near the cap from 2 unfinished orders on
    # Committed, as intake's counted insert (on its own connection) must see them.
    account_id = db_session.info["commits"].account({})
    with app.test_request_context():
        with statements_run() as far_from_it:
            first = submit(account_id, cap, key="near-1")  # 1 unfinished
        with statements_run() as near_it:
            submit(account_id, cap)  # 2 unfinished
    for _ in range(cap - 4):
        add_order(db_session, account_id=account_id)
    db_session.commit()
    assert pending_orders(db_session, account_id) == cap - 1
    with app.test_request_context():
        with statements_run() as under_it:
            last = submit(account_id, cap)
        with statements_run() as at_it, pytest.raises(TooManyRequestsError) as refused:
            submit(account_id, cap)
        replayed = submit(account_id, cap, key="near-1")  # creates nothing: still answered
        replay = (replayed.order.id, replayed.created)  # (the 422's rollback expires the row)
        with pytest.raises(UnprocessableError):
            submit(account_id, cap, key="near-1", amount="2")
    assert [(r.counted_insert, r.locked) for r in far_from_it] == [(True, False)]
    for ran in (near_it, under_it, at_it):  # the counted insert said "near", then the lock
        assert ran[0].counted_insert
        assert ran[1].locked
        assert not any(r.counted_insert for r in ran[1:])
    assert len(near_it) == len(under_it) == 4  # + the count and the plain insert
    assert first.created
    assert last.created
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "2"
    assert replay == (first.order.id, False)
    assert pending_orders(db_session, account_id) == cap


def test_a_key_replay_far_from_the_cap_reads_the_order_after_the_counted_insert(app, db_session):
    account_id = db_session.info["commits"].account()  # committed: intake commits its orders
    with app.test_request_context():
        first = submit(account_id, CAP, key="again")
        with statements_run() as replay_ran:
            again = submit(account_id, CAP, key="again")
        replay = (again.order.id, again.created)  # (the 422's rollback expires the row)
        with statements_run() as refusal_ran, pytest.raises(UnprocessableError) as refused:
            submit(account_id, CAP, key="again", amount="2")
    assert first.created
    assert replay == (first.order.id, False)
    assert "Idempotency-Key" in refused.value.errors
    for ran in (replay_ran, refusal_ran):  # the key's conflict, then the earlier order's read
        assert [r.counted_insert for r in ran] == [True, False]
        assert "idempotency_key" in ran[1].sql
        assert not any(r.locked for r in ran)
    assert pending_orders(db_session, account_id) == 1


@contextmanager
def account_row_held(engine, account_id: uuid.UUID) -> Iterator[None]:
    """Hold the account's row FOR UPDATE: an order's INSERT then waits at the end of its
    statement (its foreign key's FOR KEY SHARE check), after its snapshot and its count were
    taken. Concurrent submissions pile up inside their statements instead of running one
    after another."""
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT 1 FROM accounts WHERE id = :id FOR UPDATE"), {"id": account_id})
        yield


def wait_for_lock_waiters(engine, n: int, batches, timeout_s: float = 10) -> None:
    """Until `n` submissions wait: on a lock in PostgreSQL, or in the intake's batcher (queued,
    or in its statement in flight, which may carry several of them and waits on the lock as one
    session: that session is not counted twice)."""
    deadline = time.monotonic() + timeout_s
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            lock_waiters = conn.scalar(query)
        calls, statements = batches.in_flight()
        if max(lock_waiters - statements, 0) + calls + batches.queued() >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{n} submissions never all waited")


def submit_together(app, engine, account_id: uuid.UUID, cap: int, key: str | None) -> list:
    """TOGETHER submissions at once, each on its own session (threads), held until all of them
    wait on a lock (the account's row, or its advisory lock): what each returned or raised."""

    def one() -> SubmittedOrder | OrderEngineError:
        with app.app_context():
            try:
                return submit(account_id, cap, key)
            except OrderEngineError as exc:
                return exc

    batches = IntakeCommitter(get_engine(app))
    with ThreadPoolExecutor(TOGETHER) as pool:
        with account_row_held(engine, account_id):
            futures = [pool.submit(one) for _ in range(TOGETHER)]
            wait_for_lock_waiters(engine, TOGETHER, batches)
        return [future.result(timeout=10) for future in futures]


# DB_POOL_SIZE is 5 in the tests' settings: each submission holds a connection.
TOGETHER = 5


def test_concurrent_submissions_with_one_key_create_one_order(
    test_settings, redis_client, engine, committed_account
):
    app = create_app(test_settings)
    # The first waits on the account's row with its order inserted; the others wait for it in
    # the intake's batcher (or, had they been sent, on its key in the unique index), then
    # insert nothing and replay it.
    results = submit_together(app, engine, committed_account, CAP, "together")
    assert all(isinstance(r, SubmittedOrder) for r in results), results
    assert sum(r.created for r in results) == 1
    assert len({r.order.id for r in results}) == 1
    with Session(engine) as session:
        assert pending_orders(session, committed_account) == 1


def test_concurrent_submissions_near_the_cap_take_the_last_place_once(
    test_settings, redis_client, engine, committed_account
):
    cap = IN_FLIGHT_SLACK + 2
    with Session(engine) as session, session.begin():
        session.add_all([build_order(account_id=committed_account) for _ in range(cap - 1)])
    app = create_app(test_settings)
    # Each counted insert finds the account near its cap, so all take the advisory lock: the
    # first waits on the account's row with its order inserted, the others on the lock, and
    # they count again once it is theirs.
    results = submit_together(app, engine, committed_account, cap, None)
    accepted = [r for r in results if isinstance(r, SubmittedOrder)]
    refused = [r for r in results if isinstance(r, TooManyRequestsError)]
    assert (len(accepted), len(refused)) == (1, TOGETHER - 1), results
    with Session(engine) as session:
        assert pending_orders(session, committed_account) == cap


def test_the_reconciler_leaves_the_orders_still_queued_behind_the_queues_head(
    app, broker, db_session, redis_client
):
    """Under a backlog orders wait in the queue longer than STALE_PENDING_AFTER_S without being
    lost: those sent after the oldest message still queued are not sent again."""
    now = datetime.now(UTC)
    with db_session.begin():
        first, second, third = (
            add_order(
                db_session,
                created_at=now - timedelta(days=age),
                dispatched_at=now - timedelta(days=age),
            ).id
            # All long past the 30 s a lost order is given, and older than any order another
            # test left in the database: a sweep takes the oldest first, a batch at a time.
            for age in (3, 2, 1)
        )
    sender = direct_sender(app)
    with app.app_context():
        for queued in (second, third):  # `first` was taken off the queue, and lost
            sender.send(dispatch.EXECUTE_ORDER, {"order_id": str(queued)})
        assert sender.oldest_queued_order() == second
        reconciler = ReconcilerService(db_session, app.config["SETTINGS"], redis_client)
        resent = reconciler.run()
        assert first in resent
        assert second not in resent
        assert third not in resent
        broker.delete("orders")  # Redis restarted empty: nothing is queued any more
        assert sender.oldest_queued_order() is None
        resent = reconciler.run()
    assert {second, third} <= set(resent)


def test_sends_that_meet_in_flight_share_one_round_trip(app, broker):
    sender = direct_sender(app)
    batches: list[list[str]] = []  # the orders each pipeline carried
    first_held, release = threading.Event(), threading.Event()
    queue_one, pipeline = sender._queue, sender.client.pipeline

    def noted_pipeline(*args, **kwargs):
        batches.append([])
        return pipeline(*args, **kwargs)

    def held_queue(pipe, name, kwargs, reply_to):
        batches[-1].append(kwargs["order_id"])
        if not first_held.is_set():
            first_held.set()
            release.wait(5)
        return queue_one(pipe, name, kwargs, reply_to)

    sender._queue = held_queue  # type: ignore[method-assign]
    sender.client.pipeline = noted_pipeline  # type: ignore[method-assign]
    try:
        order_ids = [str(uuid.uuid4()) for _ in range(5)]
        ids: dict[str, str] = {}

        def send(order_id: str) -> None:
            ids[order_id] = sender.send(dispatch.EXECUTE_ORDER, {"order_id": order_id})

        threads = [threading.Thread(target=send, args=(order_id,)) for order_id in order_ids]
        threads[0].start()
        assert first_held.wait(5)
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: sender._batches.queued() == 4, 5, "the other sends to queue")
        release.set()
        for thread in threads:
            thread.join(5)
    finally:
        del sender._queue, sender.client.pipeline
    assert [len(orders) for orders in batches] == [1, 4]
    queued = {
        _decode(raw)["headers"]["id"]: json.loads(base64.b64decode(json.loads(raw)["body"]))[1]
        for raw in broker.lrange("orders", 0, -1)
    }
    # Every order's own message, under the task id its caller was given.
    assert {task_id: kwargs["order_id"] for task_id, kwargs in queued.items()} == {
        task_id: order_id for order_id, task_id in ids.items()
    }
