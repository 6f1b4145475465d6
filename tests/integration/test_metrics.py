"""`GET /metrics`: the series of docs/operating.md move as orders flow through the real API and
worker processes (multiprocess mode: the worker's series are read by the API), and the endpoint is
closed to callers beyond loopback without an admin key."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import order_body, request, stream
from tests.support.factories import add_key
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> tuple[Samples, str]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every label set that includes `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_metrics_move_as_orders_confirm_fail_and_retry(live_stack):
    before, _ = scrape(live_stack.base_url)
    confirmed_ids = []
    for amount in ("0.11", "0.12"):
        response = request(
            "POST", f"{live_stack.base_url}/api/orders/execute", order_body(amount=amount)
        )
        assert response.status == 202, response.body
        confirmed_ids.append(response.body["orderId"])
    tag = f"metrics-fail-{uuid.uuid4()}"
    live_stack.plant_faults(tag, *["rpc_unavailable"] * 3)
    failing = request(
        "POST", f"{live_stack.base_url}/api/orders/execute", order_body(clientOrderId=tag)
    )
    assert failing.status == 202, failing.body
    for order_id in confirmed_ids:
        result = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}")
        assert result.statuses[-1] == "confirmed", live_stack.logs()
    result = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={failing.body['orderId']}")
    assert result.statuses[-1] == "failed", live_stack.logs()

    def moved() -> Samples | None:
        after, _ = scrape(live_stack.base_url)
        finished = value(
            after, "order_engine_orders_finished_total", type="market", status="confirmed"
        ) - value(before, "order_engine_orders_finished_total", type="market", status="confirmed")
        return after if finished >= 2 else None

    # The worker records a final status just after the commit the stream saw.
    after = wait_until(moved, 10, "the confirmed orders to be counted")

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("order_engine_orders_submitted_total", type="market") >= 3
    assert delta("order_engine_orders_finished_total", type="market", status="failed") >= 1
    assert delta("order_engine_order_failures_total", code="ATTEMPTS_EXHAUSTED") >= 1
    assert delta("order_engine_order_retries_total", code="RPC_UNAVAILABLE") >= 2
    assert delta("order_engine_intake_seconds_count", code="202") >= 3
    # accept → confirmed, and the time in each status the worker moved the orders through
    assert (
        delta("order_engine_order_duration_seconds_count", type="market", status="confirmed") >= 2
    )
    for status in ("pending", "routing", "building", "submitted"):
        assert delta("order_engine_order_status_seconds_count", status=status) >= 2, status
    assert delta("order_engine_rpc_seconds_count", method="sendTransaction") >= 2
    # scrape-time gauges
    assert ("order_engine_queue_depth", frozenset({("queue", "orders")})) in after
    assert value(after, "order_engine_oldest_pending_order_age_seconds") >= 0


def test_open_websockets_are_counted_while_open(live_stack):
    from tests.support.clients import WsClient

    before, _ = scrape(live_stack.base_url)
    response = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body())
    order_id = response.body["orderId"]
    ws = WsClient.connect(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}")
    try:
        wait_until(
            lambda: (
                value(scrape(live_stack.base_url)[0], "order_engine_websockets_open")
                >= value(before, "order_engine_websockets_open") + 1
            ),
            10,
            "the open socket to be counted",
        )
    finally:
        ws.close()


def test_metrics_need_an_admin_key_beyond_loopback(client, anonymous_client, db_session):
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    refused = anonymous_client.get("/metrics", environ_base=remote)
    assert refused.status_code == 401
    assert refused.json["code"] == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    # a key without the admin scope
    assert client.get("/metrics", environ_base=remote).status_code == 403
    admin = add_key(db_session, "operators", scopes=("admin",))
    db_session.commit()  # a savepoint: the app opens its own transaction on this session
    allowed = anonymous_client.get(
        "/metrics", environ_base=remote, headers={"Authorization": f"Bearer {admin}"}
    )
    assert allowed.status_code == 200
    assert b"order_engine_orders_submitted_total" in allowed.data
    # a request relayed by a proxy on this host is not a loopback caller
    relayed = anonymous_client.get(
        "/metrics",
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    assert relayed.status_code == 401
    assert (
        anonymous_client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code
        == 200
    )
