"""A frozen Redis (SIGSTOP: connections accepted, nothing answered) never makes a client wait
without bound: intake answers 202 when the order row committed (the reconciler dispatches it
later) or 503 with Retry-After when nothing was written; a WebSocket closes with 1011."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from order_engine.ops.launch import api_argv, child_settings, free_port, start_process, stop_process
from tests.support.clients import WsClient, order_body, request, stream
from tests.support.servers import RedisServer
from tests.support.stack import LIVE_LATENCIES
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

# What a client may have to wait, Redis frozen, before it gets an answer.
ANSWER_WITHIN_S = 8.0


@pytest.mark.timeout(90)
def test_post_and_websocket_answer_within_a_bound_while_redis_is_frozen(
    test_settings, redis_factory: Callable[..., RedisServer], tmp_path, clean_tables
):
    redis_server = redis_factory()
    port = free_port()
    # The API exactly as `make run` starts it (gevent), on a private Redis the test freezes.
    settings = {
        **test_settings,
        **LIVE_LATENCIES,
        "REDIS_URL": redis_server.url(0),
        "CELERY_BROKER_URL": redis_server.url(1),
        "PORT": str(port),
    }
    api = start_process(
        api_argv(child_settings(settings), port), {**os.environ, **settings}, tmp_path / "api.log"
    )
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    engine = create_engine(settings["DATABASE_URL"])
    assert redis_server.process is not None
    try:
        wait_until(
            lambda: request("GET", f"{base}/readyz", timeout_s=2).status == 200, 60, "the API"
        )
        before = request("POST", f"{base}/api/orders/execute", order_body())
        assert before.status == 202, before.body
        existing = before.body["orderId"]
        # The process's pub/sub hub is connected and streaming before the freeze.
        warm = WsClient.connect(f"{ws_base}/api/orders/execute?orderId={existing}")
        assert json.loads(warm.receive(timeout=10))["status"] == "pending"
        warm.close()

        redis_server.process.send_signal(signal.SIGSTOP)

        started = time.monotonic()
        answer = request(
            "POST", f"{base}/api/orders/execute", order_body(), timeout_s=ANSWER_WITHIN_S + 20
        )
        took_s = time.monotonic() - started
        assert took_s < ANSWER_WITHIN_S, f"POST took {took_s:.1f}s"
        if answer.status == 202:
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT status FROM orders WHERE id = :id"),
                    {"id": answer.body["orderId"]},
                ).one()
            assert row.status == "pending"  # committed; the reconciler will dispatch it
        else:
            assert answer.status == 503, answer.body
            assert "Retry-After" in answer.headers

        for url, first in [
            (f"{ws_base}/api/orders/execute?orderId={existing}", None),
            (f"{ws_base}/api/orders/execute", order_body()),
        ]:
            started = time.monotonic()
            closed = stream(url, first_message=first, timeout_s=ANSWER_WITHIN_S + 20)
            took_s = time.monotonic() - started
            assert closed.close_code == 1011, (url, closed)
            assert took_s < ANSWER_WITHIN_S, f"{url} took {took_s:.1f}s to close"
            if first is not None:  # submitted on the socket: the error names the order
                assert closed.messages[-1]["orderId"], closed.messages
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
        stop_process(api)
        engine.dispose()
