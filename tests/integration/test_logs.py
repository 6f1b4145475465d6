"""The live stack's logs (LOG_FORMAT=json, as in production): every line is one JSON object,
the worker's lines about an order carry its id, attempt and Celery task id, and no line carries
a secret — the API key, a stream ticket or the wallet's secret key."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.clients import TEST_API_KEY, order_body, request, stream
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


def json_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.strip():
            record = json.loads(raw)  # every line, Celery's and gunicorn's included
            assert isinstance(record, dict), raw
            lines.append(record)
    return lines


def test_order_lines_carry_their_ids_and_no_line_carries_a_secret(live_stack):
    from solders.keypair import Keypair

    from order_engine.chain.wallet import load_keypair

    base = live_stack.base_url
    # Things that put secrets in front of the API: a stream ticket in a URL, a bad key.
    ticket = request("POST", f"{base}/api/stream-tickets").body["ticket"]
    refused = request(
        "GET", f"{base}/api/orders", headers={"Authorization": f"Bearer {TEST_API_KEY}x"}
    )
    assert refused.status == 401
    # An order whose first attempt fails and is retried: two attempts, two tasks.
    tag = f"logs-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "rpc_unavailable")
    submitted = request("POST", f"{base}/api/orders/execute", order_body(clientOrderId=tag))
    order_id = submitted.body["orderId"]
    result = stream(f"{live_stack.ws_url}/api/orders/execute?ticket={ticket}&orderId={order_id}")
    assert result.statuses[-1] == "confirmed", live_stack.logs()

    worker_log = live_stack.log_path("worker")
    confirmed_line = f"order {order_id} confirmed"
    wait_until(
        lambda: confirmed_line in worker_log.read_text(), 10, "the worker to log the confirmation"
    )
    worker = json_lines(worker_log)
    api = json_lines(live_stack.log_path("api"))

    about_order = [r for r in worker if order_id in r["message"] or r["order_id"] == order_id]
    assert about_order, "the worker said nothing about the order"
    for record in about_order:
        assert record["order_id"] == order_id, record
        assert record["task_id"], record
        received = record["message"].endswith(" received")  # before any attempt is claimed
        assert received or record["attempt"] in (1, 2), record
    assert {r["attempt"] for r in about_order} >= {1, 2}
    # Celery's retry keeps the task id: both attempts are found under one id (and in Flower).
    assert len({r["task_id"] for r in about_order}) == 1
    assert any(
        r["message"] == confirmed_line or r["message"].startswith(confirmed_line)
        for r in about_order
    )

    wallet = load_keypair(live_stack.settings["WALLET_KEYPAIR"])
    everything = "\n".join(
        live_stack.log_path(name).read_text(errors="replace") for name in ("api", "worker")
    )
    secret_part = TEST_API_KEY.rsplit("_", 1)[1]
    for secret in (secret_part, ticket, str(wallet), json.dumps(list(bytes(wallet)))):
        assert secret not in everything
    assert isinstance(wallet, Keypair)
    assert api, "the API wrote no line"
