"""SIGTERM to a worker: it finishes the swap it is running (warm shutdown) and loses nothing."""

import os
import signal

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from order_engine.app import create_app
from order_engine.models import Order
from order_engine.ops.launch import child_settings, start_process, stop_process, worker_argv
from order_engine.repositories.order import OrderRepository
from order_engine.tasking import dispatch
from tests.support.brokers import private_broker_url
from tests.support.factories import add_order
from tests.support.stack import start_localnet
from tests.support.watchers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_sigterm_lets_the_running_swap_finish(test_settings, tmp_path):
    # A chain whose swaps take long enough to be caught mid-flight by the SIGTERM.
    localnet = start_localnet(tmp_path, {"DEX_SWAP_LATENCY_MS": "2500-3000"})
    broker_url = private_broker_url(test_settings["CELERY_BROKER_URL"], 13)
    settings = {**test_settings, "CELERY_BROKER_URL": broker_url, "SOLANA_RPC_URL": localnet.url}
    engine = create_engine(settings["DATABASE_URL"])
    with Session(engine) as session, session.begin():
        order = add_order(session, amount_in=1)
        OrderRepository(session).append_first_event(order, {})
        order_id = order.id
    settings["WORKER_POOL"], settings["WORKER_CONCURRENCY"] = "threads", "4"
    worker = start_process(
        worker_argv(child_settings(settings), "shutdown-test@%h", loglevel="INFO"),
        {**os.environ, **settings},
        tmp_path / "worker.log",
    )

    def status() -> str:
        with Session(engine) as session:
            return session.scalar(select(Order.status).where(Order.id == order_id))

    try:
        wait_until(lambda: "ready" in (tmp_path / "worker.log").read_text(), 60, "the worker")
        with create_app(settings).app_context():
            dispatch.enqueue_execute_order(order_id)
        wait_until(lambda: status() == "submitted", 30, "the order to be submitted")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert status() == "confirmed"
    finally:
        stop_process(worker)
        stop_process(localnet.process)
        engine.dispose()
