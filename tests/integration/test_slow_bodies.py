"""A request body that never ends holds nothing for long: a request without a valid key is
refused before its body is read, every body has a deadline (BODY_TIMEOUT_S: 408), and one
client address may be sending only so many bodies at once (MAX_BODIES_PER_ADDRESS: 429).

Against the real gunicorn, over raw sockets: an API of this module's own, with a short
deadline, so that each case takes seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from order_engine.ops.launch import free_port
from tests.support.clients import TEST_API_KEY, order_body
from tests.support.raw import Answer, SlowRequest
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

BODY_TIMEOUT_S = 3
BODIES_PER_ADDRESS = 2
AT_ONCE_S = 1.0  # an answer that does not wait for the body comes well within the deadline
TARPIT_S = 1.0  # a 429 is answered after a pause (api/access.py)
LATE_S = BODY_TIMEOUT_S + 1.5  # the deadline's answer, with a margin for a loaded machine
KEY = f"Authorization: Bearer {TEST_API_KEY}\r\n".encode()


@pytest.fixture(scope="module")
def api(test_settings, localnet, tmp_path_factory) -> Iterator[Stack]:
    """The API alone, as `make run` starts it, with a short body deadline and bound."""
    port, log_dir = free_port(), tmp_path_factory.mktemp("slow-bodies")
    settings = {
        **test_settings,
        "PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "metrics"),
        "BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "MAX_BODIES_PER_ADDRESS": str(BODIES_PER_ADDRESS),
        # Deadlines hold under either worker class (TEST_API_WORKER_CLASS=gthread tries it).
        "API_WORKER_CLASS": os.environ.get("TEST_API_WORKER_CLASS", "gevent"),
    }
    stack = Stack(
        log_dir=log_dir,
        name="slow-bodies",
        settings=settings,
        port=port,
        localnet=localnet,
        owns_localnet=False,
    )
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()


def head(path: str, *headers: bytes, key: bytes = KEY) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + key
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


CHUNKED = b"Transfer-Encoding: chunked"
ORDER = json.dumps(order_body()).encode()


def assert_refused(answer: Answer, status: int) -> None:
    assert answer.status == status, answer
    assert answer.json()["code"] == status
    assert answer.headers["connection"] == "close"
    assert answer.closed


@pytest.mark.parametrize(
    ("framing", "first_bytes"),
    [
        (b"Content-Length: 500", b"{"),
        (b"Content-Length: %d" % len(ORDER), ORDER),  # whole, yet unread: no reset either
        (b"Content-Length: 16000", b"x" * 16000),  # more than the server reads with the head
        (CHUNKED, b"1\r\n{\r\n"),
    ],
    ids=["partial", "whole", "large", "chunked"],
)
def test_a_body_without_a_valid_key_is_refused_before_it_is_read(api, framing, first_bytes):
    for key in (b"", b"Authorization: Bearer oe_00000000_" + b"x" * 43 + b"\r\n"):
        request = SlowRequest(api.port, head("/api/orders/execute", framing, key=key), first_bytes)
        try:
            answer = request.answer(within_s=AT_ONCE_S)
        finally:
            request.close()
        assert_refused(answer, 401)


@pytest.mark.parametrize(
    ("framing", "first_bytes", "trickle"),
    [
        (b"Content-Length: 500", b"{", b" " * 100),
        (CHUNKED, b"1\r\n{\r\n", b"1\r\n \r\n" * 100),
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_that_never_ends_is_408_at_its_deadline(api, framing, first_bytes, trickle):
    request = SlowRequest(api.port, head("/api/orders/execute", framing), first_bytes)
    try:
        # A byte every half second: each read gets something, only the body's deadline runs out.
        answer = request.answer(within_s=LATE_S, trickle=trickle, every_s=0.5)
    finally:
        request.close()
    assert_refused(answer, 408)
    assert answer.after_s >= BODY_TIMEOUT_S - 0.2
    assert "BODY_TIMEOUT_S" not in answer.json()["description"]  # says seconds, not settings


def test_a_route_that_takes_no_body_answers_without_reading_one(api):
    request = SlowRequest(api.port, head("/healthz", CHUNKED), b"1\r\n{\r\n")
    try:
        answer = request.answer(within_s=AT_ONCE_S, trickle=b"1\r\n \r\n" * 10)
    finally:
        request.close()
    assert_refused(answer, 405)


def test_one_address_sends_only_so_many_bodies_at_once(api):
    # One more slow body than the bound: whichever comes last is refused at once, the others
    # reach their deadline; then the address may send again.
    requests = [
        SlowRequest(api.port, head("/api/orders/execute", b"Content-Length: 500"), b"{")
        for _ in range(BODIES_PER_ADDRESS + 1)
    ]
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(lambda r: r.answer(within_s=LATE_S), requests))
    finally:
        for request in requests:
            request.close()
    refused = [a for a in answers if a.status == 429]
    assert len(refused) == 1, answers
    assert refused[0].after_s < TARPIT_S + AT_ONCE_S
    assert_refused(refused[0], 429)
    assert "at once" in refused[0].json()["description"]
    assert sorted(a.status for a in answers) == [408] * BODIES_PER_ADDRESS + [429]
    whole = SlowRequest(api.port, head("/api/orders/execute", b"Content-Length: %d" % len(ORDER)))
    try:
        whole.conn.sendall(ORDER)
        assert whole.answer(within_s=10).status == 202
    finally:
        whole.close()
