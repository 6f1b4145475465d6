"""Log lines: JSON or text, with the order's ids from the context, and never a secret."""

from __future__ import annotations

import json
import logging

import pytest
from solders.keypair import Keypair

from order_engine.infra import logs

API_KEY = "oe_1a2b3c4d_" + "S" * 43


@pytest.fixture(autouse=True)
def no_context_from_earlier_tests():
    # Services called in-process by earlier tests bind ids in this thread (a Celery task's
    # and a request's context are cleared by their signals and teardown; a test's is not).
    logs.clear()


def emit(log_format: str, message: str, *args: object, exc: BaseException | None = None) -> str:
    handler = logs.handler(log_format)
    record = logging.LogRecord("order_engine.test", logging.INFO, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert handler.filter(record)
    return handler.format(record)


def test_json_lines_carry_the_order_attempt_and_task_bound_in_the_context():
    with logs.order_context("5f0c6d1e-0000-4000-8000-000000000001", task_id="task-1"):
        logs.bind(attempt=2)
        line = json.loads(emit("json", "order %s confirmed", "5f0c…"))
    assert line["order_id"] == "5f0c6d1e-0000-4000-8000-000000000001"
    assert (line["attempt"], line["task_id"]) == (2, "task-1")
    assert line["message"] == "order 5f0c… confirmed"
    assert (line["level"], line["logger"]) == ("INFO", "order_engine.test")
    # outside the context, nothing leaks
    after = json.loads(emit("json", "idle"))
    assert (after["order_id"], after["attempt"], after["task_id"]) == (None, None, None)


def test_text_lines_are_readable_with_the_ids_in_brackets():
    with logs.order_context("abc", task_id="t-9"):
        logs.bind(attempt=1)
        line = emit("text", "hello")
    assert line.endswith("INFO order_engine.test [order=abc attempt=1 task=t-9]: hello")
    assert emit("text", "plain").endswith("INFO order_engine.test: plain")


def test_celery_task_lines_name_the_order_from_the_task_kwargs():
    order_id = "5f0c6d1e-0000-4000-8000-00000000abcd"
    task = {
        "id": "c0ffee",
        "name": "orders.execute_order",
        "args": "()",
        "kwargs": f"{{'order_id': '{order_id}'}}",
    }
    line = json.loads(emit("json", "Task %(name)s[%(id)s] received", task))
    assert (line["order_id"], line["task_id"]) == (order_id, "c0ffee")
    assert line["message"] == "Task orders.execute_order[c0ffee] received"


def test_no_line_carries_a_secret():
    wallet = Keypair()
    logs.register_secret(str(wallet))
    keypair_file = json.dumps(list(bytes(wallet)))
    lines = [
        emit("json", "key %s refused", API_KEY),
        emit("text", "headers: Authorization: Bearer %s", API_KEY),
        emit("json", "Authorization: Basic dXNlcjpvZV8xYTJiM2M0ZF9TU1NT"),
        emit(
            "json",
            "GET /api/orders/execute?orderId=1&ticket=Xq-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        ),
        emit("json", "connecting to postgresql+psycopg://engine:hunter2hunter2@db:5432/orders"),
        emit("json", "loaded %s", keypair_file),
        emit("json", "wallet %s", str(wallet)),
    ]
    try:
        raise ValueError(f"bad key {API_KEY} for {wallet}")
    except ValueError as exc:
        lines.append(emit("json", "failed", exc=exc))
    text = "\n".join(lines)
    for secret in (
        "S" * 43,
        "hunter2hunter2",
        str(wallet),
        keypair_file,
        "dXNlcjpv",
        "Xq-abcdefghij",
    ):
        assert secret not in text, secret
    assert "oe_1a2b3c4d_[redacted]" in lines[0]  # the prefix still says which key
    assert "ValueError" in json.loads(lines[-1])["exception"]
    # a transaction signature is as long as a secret key but is not one: it stays
    signature = str(Keypair().sign_message(b"x"))
    assert signature in emit("json", "sent %s", signature)


def test_make_run_labels_a_json_line_inside_it_and_prefixes_the_others():
    from order_engine.ops.supervisor import _json_with_process

    line = json.dumps({"level": "INFO", "message": "hi", "order_id": "x"})
    labelled = json.loads(_json_with_process(line, "worker") or "")
    assert labelled == {"process": "worker", "level": "INFO", "message": "hi", "order_id": "x"}
    assert _json_with_process("2026-11-30 INFO plain line", "api") is None
    assert _json_with_process("{not json}", "api") is None


def test_celerys_lines_about_the_control_tasks_are_dropped_and_the_rest_kept():
    quiet = logs.QuietControlTasks(("orders.evaluate_triggers", "orders.reconcile_orders"))

    def record(name: str, level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, (), None)

    sent = "Scheduler: Sending due task evaluate-triggers (orders.evaluate_triggers)"
    assert not quiet.filter(record("celery.beat", logging.INFO, sent))
    received = "Task orders.reconcile_orders[1f] received"
    assert not quiet.filter(record("celery.worker.strategy", logging.INFO, received))
    assert quiet.filter(
        record("celery.worker.strategy", logging.INFO, "Task orders.execute_order[2a] received")
    )
    assert quiet.filter(
        record("celery.app.trace", logging.ERROR, "Task orders.evaluate_triggers[3b] raised")
    )
    assert quiet.filter(
        record("order_engine.services.triggers.engine", logging.INFO, "orders.evaluate_triggers")
    )
