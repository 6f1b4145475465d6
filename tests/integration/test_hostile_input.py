"""Nothing a client sends gets a 500 or a 1011, nor an HTML page, nor an answer that speaks of
the implementation rather than the API; against the real gunicorn API of `live_stack`. Slow
bodies have their own module (test_slow_bodies.py)."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import struct
import uuid
from urllib.parse import quote

import psutil
import pytest
import simple_websocket

from tests.support.clients import TEST_API_KEY, WsClient, order_body, request, stream
from tests.support.raw import header_map, port_of, raw_http
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


AUTH = f"Authorization: Bearer {TEST_API_KEY}\r\n".encode()


def test_deep_json_nesting_is_400_over_rest_and_4400_over_the_websocket(live_stack):
    deep = "[" * 2000 + "]" * 2000
    body = json.dumps({**order_body(), "clientOrderId": None})[:-1] + f', "x": {deep}}}'
    response = request(
        "POST", f"{live_stack.base_url}/api/orders/execute", None, {"Content-Length": "0"}
    )
    assert response.status in (400, 422)
    status, _, answer = raw_http(
        port_of(live_stack),
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode(),
    )
    assert status == 400, answer
    assert "nested too deeply" in json.loads(answer)["description"]
    result = stream(f"{live_stack.ws_url}/api/orders/execute", first_message=deep)
    assert result.close_code == 4400


@pytest.mark.parametrize("client_order_id", ["nul\x00inside", "lone \ud800 surrogate", "tab\there"])
def test_unstorable_client_order_ids_are_422_and_4400(live_stack, client_order_id):
    body = order_body(clientOrderId=client_order_id)
    encoded = json.dumps(body)  # ensure_ascii: \u0000 and \ud800 travel as escapes
    status, _, answer = raw_http(
        port_of(live_stack),
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH
        + f"Content-Length: {len(encoded)}\r\n\r\n{encoded}".encode(),
    )
    assert status == 422, answer
    assert "clientOrderId" in json.loads(answer)["errors"]
    result = stream(f"{live_stack.ws_url}/api/orders/execute", first_message=encoded)
    assert result.close_code == 4400
    assert "clientOrderId" in result.messages[0]["errors"]


def test_amount_with_a_trailing_newline_and_duplicate_keys_are_refused(live_stack):
    url = f"{live_stack.base_url}/api/orders/execute"
    response = request("POST", url, order_body(amount="1.5\n"))
    assert response.status == 422
    assert "amount" in response.body["errors"]
    duplicated = (
        '{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.1", "amount": "9"}'
    )
    status, _, answer = raw_http(
        port_of(live_stack),
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH
        + f"Content-Length: {len(duplicated)}\r\n\r\n{duplicated}".encode(),
    )
    assert status == 400
    assert "duplicate key 'amount'" in json.loads(answer)["description"]


def test_an_amount_no_pool_could_fill_is_422_naming_the_bound(live_stack):
    response = request(
        "POST", f"{live_stack.base_url}/api/orders/execute", order_body(amount="18400000000")
    )
    assert response.status == 422
    assert "could ever fill" in response.body["errors"]["amount"][0]


@pytest.mark.parametrize("after_seq", ["²", "-1", "1.5", "x", "9" * 10])
def test_malformed_after_seq_is_4400(live_stack, after_seq):
    order_id = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body()).body[
        "orderId"
    ]
    result = stream(
        f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}&afterSeq={quote(after_seq)}"
    )
    assert result.close_code == 4400


def test_a_long_idempotency_key_on_the_websocket_is_4400_as_over_rest(live_stack):
    key = "k" * 300
    rest = request(
        "POST",
        f"{live_stack.base_url}/api/orders/execute",
        order_body(),
        {"Idempotency-Key": key},
    )
    assert rest.status == 422
    ws = WsClient.connect(
        f"{live_stack.ws_url}/api/orders/execute", headers={"Idempotency-Key": key}
    )
    ws.send(json.dumps(order_body()))
    try:
        message = json.loads(ws.receive(timeout=10))
        ws.receive(timeout=10)
    except simple_websocket.ConnectionClosed:
        pass
    assert message["code"] == 4400
    assert "Idempotency-Key" in message["errors"]
    assert ws.close_reason == 4400


def test_after_seq_at_a_finished_orders_last_event_closes_the_stream(live_stack):
    order_id = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body()).body[
        "orderId"
    ]
    full = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}", timeout_s=60)
    assert full.close_code == 1000
    last = full.events[-1]["seq"]
    for after in (last, last + 5):
        resumed = stream(
            f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}&afterSeq={after}",
            timeout_s=10,
        )
        assert resumed.close_code == 1000
        assert resumed.events == []


def test_a_one_megabyte_frame_is_closed_with_1009(live_stack):
    ws = WsClient.connect(f"{live_stack.ws_url}/api/orders/execute")
    try:
        ws.send("x" * 1_000_000)
        while True:
            ws.receive(timeout=10)
    except simple_websocket.ConnectionClosed:
        pass  # a close frame, not a reset (which would be an OSError from send)
    finally:
        with contextlib.suppress(simple_websocket.ConnectionClosed):
            ws.close()
    assert ws.close_reason == 1009


def test_a_chunked_body_over_the_limit_is_413(live_stack):
    chunk = b"x" * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    status, headers, answer = raw_http(
        port_of(live_stack),
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunks,
    )
    assert status == 413, answer
    assert json.loads(answer)["code"] == 413
    # Under the limit, a chunked order is read whole.
    body = json.dumps(order_body()).encode()
    status, _, answer = raw_http(
        port_of(live_stack),
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    assert status == 202, answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 150 + b"\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
    ],
)
def test_requests_gunicorn_refuses_get_the_json_envelope(live_stack, raw, status):
    got, headers, answer = raw_http(port_of(live_stack), raw)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(answer)["code"] == status


def test_delete_on_the_execute_path_is_405_with_its_methods(live_stack):
    response = request("DELETE", f"{live_stack.base_url}/api/orders/execute")
    assert response.status == 405
    assert "DELETE" not in response.headers["Allow"]
    assert "POST" in response.headers["Allow"]


def test_others_orders_are_4404_on_the_websocket_and_tickets_are_one_use(live_stack, engine):
    from sqlalchemy.orm import Session

    from order_engine.services.access import AccessService

    with Session(engine) as session:
        other = AccessService(session).create_key(
            f"other-{uuid.uuid4().hex[:6]}", "t", ["orders:read"]
        )
    mine = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body()).body[
        "orderId"
    ]
    theirs = stream(
        f"{live_stack.ws_url}/api/orders/execute?orderId={mine}",
        headers={"Authorization": f"Bearer {other.secret}"},
    )
    assert theirs.close_code == 4404
    ticket = request("POST", f"{live_stack.base_url}/api/stream-tickets").body["ticket"]
    url = f"{live_stack.ws_url}/api/orders/execute?orderId={mine}&ticket={ticket}"
    first = stream(url, headers={"Authorization": ""}, timeout_s=60)
    assert first.close_code == 1000
    with pytest.raises(simple_websocket.ConnectionError, match="401"):
        WsClient.connect(url, headers={"Authorization": ""})


def test_the_websocket_needs_a_key_and_an_allowed_origin(live_stack):
    url = f"{live_stack.ws_url}/api/orders/execute"
    with pytest.raises(simple_websocket.ConnectionError, match="401"):
        WsClient.connect(url, headers={"Authorization": ""})
    with pytest.raises(simple_websocket.ConnectionError, match="403"):
        WsClient.connect(url, headers={"Origin": "https://evil.example"})
    allowed = live_stack.settings.get(
        "PUBLIC_BASE_URL", f"http://localhost:{live_stack.settings['PORT']}"
    )
    ws = WsClient.connect(url, headers={"Origin": allowed})
    ws.close()


def upgrade(stack, order_id: str | None, *headers: bytes) -> bytes:
    """A WebSocket upgrade for `order_id`'s stream (None: to submit one) with the suite's key
    and `headers`."""
    query = "" if order_id is None else f"?orderId={order_id}"
    return (
        f"GET /api/orders/execute{query} HTTP/1.1\r\nHost: x\r\n".encode()
        + AUTH
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


def test_the_upgrade_is_answered_with_rfc_6455s_accept_and_no_extension(live_stack):
    order_id = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body()).body[
        "orderId"
    ]
    with socket.create_connection(("127.0.0.1", port_of(live_stack)), timeout=10) as conn:
        conn.sendall(
            upgrade(
                live_stack,
                order_id,
                b"Upgrade: WebSocket",
                b"Connection: keep-alive, Upgrade",
                b"Sec-WebSocket-Version: 13",
                # RFC 6455 §1.3's example key and the accept it must produce
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            )
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += conn.recv(4096)
    head = received.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 101 ")
    headers = header_map(head)
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["upgrade"].lower() == "websocket"
    # Frames go uncompressed: deflating a few hundred bytes of JSON costs more than it saves.
    assert "sec-websocket-extensions" not in headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Version: 13"), 400),
        (
            (
                b"Upgrade: websocket",
                b"Connection: Upgrade",
                b"Sec-WebSocket-Version: 13",
                b"Sec-WebSocket-Key: c2hvcnQ=",
            ),
            400,
        ),
        (
            (
                b"Upgrade: websocket",
                b"Connection: Upgrade",
                b"Sec-WebSocket-Version: 8",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ),
            426,
        ),
        (
            (
                b"Upgrade: websocket",
                b"Connection: close",
                b"Sec-WebSocket-Version: 13",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ),
            426,  # not an upgrade: the plain GET's answer
        ),
    ],
    ids=["no-key", "short-key", "old-version", "no-connection-upgrade"],
)
def test_a_malformed_upgrade_is_a_4xx_envelope(live_stack, headers, status):
    got, answer_headers, answer = raw_http(
        port_of(live_stack), upgrade(live_stack, str(uuid.uuid4()), *headers)
    )
    assert got == status, answer
    assert json.loads(answer)["code"] == status
    if b"Sec-WebSocket-Version: 8" in headers:
        assert answer_headers["sec-websocket-version"] == "13"


def post_order_raw(stack, body: bytes, *headers: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST /api/orders/execute over a bare socket, with the suite's key and `headers`."""
    return raw_http(
        port_of(stack),
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH
        + b"".join(h + b"\r\n" for h in headers)
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
    )


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "GZIP, identity", "x-custom"])
def test_a_body_in_an_encoding_the_api_does_not_decode_is_415_naming_it(live_stack, encoding):
    plain = json.dumps(order_body()).encode()
    body = gzip.compress(plain) if "gzip" in encoding.lower() else plain
    status, headers, answer = post_order_raw(
        live_stack, body, b"Content-Encoding: " + encoding.encode()
    )
    assert status == 415, answer
    refusal = json.loads(answer)
    assert refusal["code"] == 415
    assert repr(encoding.split(",")[0].lower()) in refusal["description"]
    assert "Content-Encoding" in refusal["errors"]
    assert headers["accept-encoding"] == "identity"  # RFC 7694: what it does take


def test_the_identity_encoding_is_the_body_as_it_is(live_stack):
    body = json.dumps(order_body()).encode()
    status, _, answer = post_order_raw(live_stack, body, b"Content-Encoding: identity")
    assert status == 202, answer


def test_a_binary_first_message_is_an_error_then_close_1003(live_stack):
    ws = WsClient.connect(f"{live_stack.ws_url}/api/orders/execute")
    messages = []
    try:
        ws.send(json.dumps(order_body()).encode())  # bytes: a binary frame
        while True:
            raw = ws.receive(timeout=10)
            assert raw is not None, f"still open after 10 s: {messages}"
            messages.append(json.loads(raw))
    except simple_websocket.ConnectionClosed:
        pass
    assert ws.close_reason == 1003
    assert [m["type"] for m in messages] == ["error"]  # no order was taken: no event
    assert messages[0]["code"] == 1003
    assert "binary" in messages[0]["description"].lower()


LONG = "9" * 5000  # past the 4,300 digits Python converts to an int


def speaks_python(text: str | bytes) -> bool:
    text = text if isinstance(text, str) else text.decode()
    return "sys." in text or "int_max_str_digits" in text or "4300" in text


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": LONG}, "amount"),
        ({"amount": f'"{LONG}"'}, "amount"),
        ({"amount": f'"0.{LONG}"'}, "amount"),
        ({"slippageBps": LONG}, "slippageBps"),
        ({"type": '"limit"', "limitPrice": LONG}, "limitPrice"),
        ({"extra": LONG}, "extra"),
    ],
    ids=["amount", "amount-text", "amount-decimals", "slippage", "limit-price", "unknown"],
)
def test_a_5000_digit_number_is_a_field_error_over_rest_and_the_websocket(
    live_stack, overrides, field
):
    fields = {"type": '"market"', "tokenIn": '"SOL"', "tokenOut": '"USDC"', "amount": '"1"'}
    body = "{" + ", ".join(f'"{k}": {v}' for k, v in {**fields, **overrides}.items()) + "}"
    status, _, answer = post_order_raw(live_stack, body.encode())
    assert status == 422, answer[:300]
    assert field in json.loads(answer)["errors"]
    assert not speaks_python(answer)
    result = stream(f"{live_stack.ws_url}/api/orders/execute", first_message=body)
    assert result.close_code == 4400
    assert field in result.messages[0]["errors"]
    assert not speaks_python(json.dumps(result.messages))


def test_long_numbers_in_the_query_are_field_errors(live_stack):
    digits = "9" * 4000  # the longest that fits in gunicorn's request line
    listed = request("GET", f"{live_stack.base_url}/api/orders?limit={digits}")
    assert listed.status == 422
    assert "limit" in listed.body["errors"]
    order_id = uuid.uuid4()
    result = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}&afterSeq={digits}")
    assert result.close_code == 4400
    assert "afterSeq" in result.messages[0]["errors"]
    for answer in (listed.body, result.messages):
        assert not speaks_python(json.dumps(answer))


def upgrade_status(stack, host: str, origin: str) -> int:
    """The status a WebSocket handshake with this Host and Origin is answered with."""
    with socket.create_connection(("127.0.0.1", port_of(stack)), timeout=10) as conn:
        conn.sendall(
            b"GET /api/orders/execute HTTP/1.1\r\n"
            + AUTH
            + f"Host: {host}\r\nOrigin: {origin}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += conn.recv(4096)
    return int(received.split(b" ", 2)[1])


def test_a_page_of_the_servers_own_origin_may_open_a_websocket(live_stack):
    # PUBLIC_BASE_URL is left at its default (http://localhost:<port>); the page was served from
    # 127.0.0.1:<port>, the Host a browser (or websocket-client) sends with the page's Origin.
    host = f"127.0.0.1:{port_of(live_stack)}"
    assert upgrade_status(live_stack, host, f"http://{host}") == 101
    assert upgrade_status(live_stack, host, f"https://{host}") == 403  # another scheme
    assert upgrade_status(live_stack, host, "http://127.0.0.1:1") == 403  # another port
    assert upgrade_status(live_stack, "evil.example", f"http://{host}") == 403  # another host


def open_connections(stack, client_ports: set[int]) -> set[int]:
    """Which of these client ports the API's worker still holds a connection from."""
    workers = psutil.Process(stack.pid("api")).children()
    held = {c.raddr.port for w in workers for c in w.net_connections("tcp") if c.raddr}
    return held & client_ports


def test_a_client_that_resets_after_its_upgrade_is_not_an_error_in_the_log(live_stack):
    order_id = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body()).body[
        "orderId"
    ]
    log_start = len(live_stack.log("api"))
    ports = set()
    for path_id in (None, order_id) * 5:
        with socket.create_connection(("127.0.0.1", port_of(live_stack)), timeout=10) as conn:
            conn.sendall(
                upgrade(
                    live_stack,
                    path_id,
                    b"Upgrade: websocket",
                    b"Connection: Upgrade",
                    b"Sec-WebSocket-Version: 13",
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                )
            )
            ports.add(conn.getsockname()[1])
            # Closed with a linger of 0: a reset, before the server's answer arrives.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_until(lambda: not open_connections(live_stack, ports), 10, "the resets to be served")
    log = live_stack.log("api")[log_start:]
    assert '"level": "ERROR"' not in log
    assert "Traceback" not in log
