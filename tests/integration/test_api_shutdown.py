"""SIGTERM to the API: open streams close with 1001 and where to resume; nothing is lost."""

import json
import os
import signal
import urllib.request

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from order_engine.live.streaming import STREAM_TICK_S
from order_engine.models import Order
from order_engine.ops.launch import api_argv, child_settings, free_port, start_process, stop_process
from order_engine.repositories.order import OrderRepository
from tests.support.clients import WsClient
from tests.support.factories import add_order
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_sigterm_closes_open_streams_with_1001_and_a_resume_point(
    test_settings, tmp_path, worker_class
):
    engine = create_engine(test_settings["DATABASE_URL"])
    # An order nobody executes: its stream stays open until the server goes away.
    with Session(engine) as session, session.begin():
        order = add_order(session, client_order_id="never-dispatched")
        OrderRepository(session).append_first_event(order, {})
        order_id = order.id
    port = free_port()
    settings = {**test_settings, "WEB_CONCURRENCY": "1", "API_WORKER_CLASS": worker_class}
    api = start_process(
        api_argv(child_settings(settings), port), {**os.environ, **settings}, tmp_path / "api.log"
    )
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200,
            30,
            "the API to start",
        )
        ws = WsClient.connect(f"ws://127.0.0.1:{port}/api/orders/execute?orderId={order_id}")
        first = json.loads(ws.receive(timeout=10))
        assert (first["seq"], first["status"]) == (1, "pending")
        api.send_signal(signal.SIGTERM)
        # Woken at once, not at the end of the socket's wait (STREAM_TICK_S).
        wait_until(lambda: not ws.connected, STREAM_TICK_S - 2, "the server to close the stream")
        assert ws.close_reason == 1001
        assert "afterSeq=1" in ws.close_message
        assert api.wait(timeout=20) == 0
    finally:
        stop_process(api)
        with engine.begin() as conn:
            conn.execute(Order.__table__.delete().where(Order.id == order_id))
        engine.dispose()
