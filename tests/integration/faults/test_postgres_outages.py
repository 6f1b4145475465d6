"""PostgreSQL stopping under the API and the workers (docs/reliability.md, scenarios #15, #16).

These run on a private PostgreSQL (module-scoped) that the tests stop and start again.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.support.clients import order_body, request, unique_tag
from tests.support.invariants import HAPPY_PATH, check_invariants
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

GAVE_UP = r"Task orders\.execute_order\[[0-9a-f-]+\] raised unexpected: OperationalError"


@pytest.mark.timeout(120)
def test_postgres_down_at_post_answers_503_and_the_retry_creates_one_order(
    make_stack, private_postgres
):
    stack = make_stack(postgres=private_postgres)
    key, tag = unique_tag("pg-down"), unique_tag("pg-down-order")
    body = order_body(clientOrderId=tag)

    private_postgres.stop()
    try:
        refused = stack.post_order(body, key)
    finally:
        private_postgres.start()

    assert refused.status == 503, refused.body
    assert refused.body["code"] == 503
    assert refused.body["message"] == "Service Unavailable"
    assert "PostgreSQL" in refused.body["description"]
    assert refused.headers.get("Retry-After")
    assert stack.order_count(idempotency_key=key) == 0  # nothing stored under the key

    created = stack.post_order(body, key)
    replayed = stack.post_order(body, key)
    assert created.status == 202
    assert "Idempotent-Replayed" not in created.headers
    assert (replayed.status, replayed.body["orderId"]) == (202, created.body["orderId"])
    report = check_invariants(stack, expect_keys={key})
    assert report.by_status == {"confirmed": 1}


@pytest.mark.timeout(120)
def test_backends_terminated_between_requests_never_cause_a_500(make_stack, private_postgres):
    stack = make_stack(postgres=private_postgres)
    database = stack.engine.url.database
    admin = f"host={private_postgres.socket_dir} user=postgres dbname=postgres"

    def terminate_backends() -> int:
        # With a timeout, pg_terminate_backend waits for each backend to exit (PostgreSQL 14+):
        # "between requests" means ended by the next one, not just signalled. A session ended
        # while the API's request is already under way is a 503 to retry, not this test's case.
        with psycopg.connect(admin, autocommit=True) as conn:
            return len(
                conn.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                ).fetchall()
            )

    answers, polls = [], []

    def polled(url: str) -> str | None:
        response = request("GET", url)
        polls.append(response.status)
        return response.body.get("status")

    for n in range(5):
        assert terminate_backends() > 0  # the API's, the worker's and the scheduler's
        created = stack.post_order(order_body(amount=f"0.{n + 11}"))
        answers.append(created.status)
        order_url = f"{stack.base_url}/api/orders/{created.body['orderId']}"
        wait_until(lambda url=order_url: polled(url) == "confirmed", 20, "the order to confirm")
        terminate_backends()
        answers.append(request("GET", order_url).status)
        answers.append(request("GET", f"{stack.base_url}/api/orders?limit=5").status)

    assert answers == [202, 200, 200] * 5
    assert set(polls) == {200}
    report = check_invariants(stack)
    assert report.by_status == {"confirmed": 5}


@pytest.mark.timeout(150)
def test_postgres_stopped_between_send_and_record_confirms_once(make_stack, private_postgres):
    stack = make_stack(postgres=private_postgres, DEX_SWAP_LATENCY_MS="2500")
    tag = unique_tag("pg-stop-submitted")
    order_id = stack.submit(clientOrderId=tag)
    stack.watch(order_id)
    stack.wait_status(order_id, "submitted")

    private_postgres.stop()  # the transaction is on the chain; its result is not recorded yet
    try:
        # Down long enough for Celery to spend its retries: only the reconciler is left.
        stack.wait_log_match("worker", GAVE_UP, 30)
    finally:
        private_postgres.start()

    check_invariants(stack, terminal_within_s=60)
    assert stack.order_row(order_id)["status"] == "confirmed"
    assert stack.statuses(order_id) == HAPPY_PATH
    assert [tx["status"] for tx in stack.ledger(tag)] == ["landed"]
