"""With RabbitMQ as the broker (`make test-rabbitmq`): intake's send, the reconciler's control
queue, the worker's health check and Flower. The lifecycle, retries, streams and triggers are
the tests marked `broker`, which `make test-rabbitmq` runs against RabbitMQ too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kombu import Connection
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from order_engine.app import create_app
from order_engine.config import Settings
from order_engine.models import Order
from order_engine.ops.launch import free_port, start_process, stop_process
from order_engine.repositories.order import OrderRepository
from order_engine.tasking import dispatch
from order_engine.tasking.app import TASK_QUEUE, is_amqp
from tests.support.brokers import private_broker_url, queue_depth
from tests.support.clients import TEST_API_KEY
from tests.support.factories import build_order
from tests.support.watchers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]


@pytest.fixture(scope="module", autouse=True)
def _amqp_only(test_settings):
    if not is_amqp(test_settings["CELERY_BROKER_URL"]):
        pytest.skip("RabbitMQ only: run with `make test-rabbitmq` (TEST_BROKER=rabbitmq)")


def test_intake_publishes_through_celery_with_publisher_confirms(test_settings, engine):
    # A virtual host no worker consumes, so the message can be read back.
    settings = {
        **test_settings,
        "CELERY_BROKER_URL": private_broker_url(test_settings["CELERY_BROKER_URL"], 11),
    }
    app = create_app(settings)
    celery_app = app.extensions["celery"]
    assert dispatch.task_sender(celery_app) is None  # the Redis fast path stands aside
    assert celery_app.conf.broker_transport_options["confirm_publish"] is True
    client = app.test_client()
    response = client.post(
        "/api/orders/execute",
        json={"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    )
    assert response.status_code == 202, response.get_json()
    order_id = response.get_json()["orderId"]
    try:
        # Confirmed publish: the message is in the queue when the 202 is answered.
        assert queue_depth(settings["CELERY_BROKER_URL"]) == 1
        with Connection(settings["CELERY_BROKER_URL"]) as conn:
            message = conn.default_channel.basic_get(TASK_QUEUE, no_ack=True)
        assert message.headers["task"] == dispatch.EXECUTE_ORDER
        kwargs = json.loads(message.body)[1]
        assert kwargs["order_id"] == order_id
        assert kwargs["order"]["amount"] == "1.5"  # intake's copy for the first run
        assert message.properties["delivery_mode"] == 2  # persistent
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM orders WHERE id = %s", (uuid.UUID(order_id),))


def _lost_order(database_url: str) -> uuid.UUID:
    """An order committed an hour ago whose task never reached the broker."""
    engine = create_engine(database_url)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    try:
        with Session(engine) as session, session.begin():
            repo = OrderRepository(session)
            order = repo.add(build_order(amount_in=1, created_at=an_hour_ago))
            repo.append_first_event(order, {})
            order.dispatched_at = an_hour_ago
            return order.id
    finally:
        engine.dispose()


def test_the_reconciler_runs_on_the_control_queue_and_requeues_a_lost_order(
    live_stack, clean_tables
):
    order_id = _lost_order(live_stack.settings["DATABASE_URL"])
    app = create_app(live_stack.settings)
    with app.app_context():
        app.extensions["celery"].send_task(dispatch.RECONCILE_ORDERS)
    engine = create_engine(live_stack.settings["DATABASE_URL"])

    def status() -> str:
        with Session(engine) as session:
            return session.scalar(select(Order.status).where(Order.id == order_id))

    try:
        wait_until(lambda: status() == "confirmed", 30, "the lost order to be re-queued and run")
    finally:
        engine.dispose()
    # The worker consumed the control queue, so its health check passes.
    env = {**os.environ, **live_stack.settings}
    check = subprocess.run(
        [sys.executable, "-m", "order_engine.ops.cli", "check-worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("healthy:"), check.stdout  # not a start-up grace's `starting`


def test_flower_shows_each_task_with_its_order_id(live_stack, tmp_path, clean_tables):
    from order_engine.ops.programs import flower_program
    from tests.support.clients import order_body

    port = free_port()
    env = {
        **os.environ,
        **live_stack.settings,
        "FLOWER_PORT": str(port),
        # Flower's JSON API wants credentials unless told otherwise; loopback only here.
        "FLOWER_UNAUTHENTICATED_API": "true",
    }
    argv = flower_program(Settings.from_env(live_stack.settings)).argv
    argv = [a if not a.startswith("--port=") else f"--port={port}" for a in argv]
    flower = start_process(argv, env, tmp_path / "flower.log")
    try:
        base = f"http://127.0.0.1:{port}"
        last: list[str] = [""]
        wait_until(lambda: _get(f"{base}/healthcheck") == "OK", 60, "Flower to answer")
        # Flower learns of tasks from the workers' events, and only of those sent once its
        # event queue is bound, which its HTTP side does not wait for: an order whose events
        # went by before that is not shown, so another is submitted every few seconds until
        # one is (the test is about what Flower shows, not about when it starts listening).
        from tests.support.clients import request

        submitted: dict[str, float] = {}

        def seen() -> bool:
            if not submitted or time.monotonic() - max(submitted.values()) > 5:
                response = request(
                    "POST", f"{live_stack.base_url}/api/orders/execute", order_body(), {}, 30
                )
                assert response.status == 202, response.body
                submitted[response.body["orderId"]] = time.monotonic()
            last[0] = _get(f"{base}/api/tasks?taskname={dispatch.EXECUTE_ORDER}")
            tasks = json.loads(last[0] or "{}")
            return any(
                order_id in str(task.get("kwargs")) and task.get("state") == "SUCCESS"
                for task in tasks.values()
                for order_id in submitted
            )

        wait_until(seen, 60, "Flower to show an order's task by its order id", every_s=0.5)
    except AssertionError:
        log = (tmp_path / "flower.log").read_text(errors="replace")
        raise AssertionError(f"{log}\nlast answer: {last[0][:2000]}\n{live_stack.logs()}") from None
    finally:
        stop_process(flower)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.read().decode()
    except OSError:
        return ""
