"""The project's WebSocket clients against a server that sends the handshake, every event and
the close in one write (tests/support/burst.py), as the API does for a finished order."""

from __future__ import annotations

import json

import pytest

from order_engine import client
from tests.support.burst import BurstServer
from tests.support.clients import stream


@pytest.fixture
def burst():
    with BurstServer() as server:
        yield server


def test_orders_watch_gets_every_event_of_a_finished_order_and_exits_0(burst, capsys):
    for _ in range(20):
        code = client.main(
            ["orders", "watch", burst.order_id, "--url", burst.base_url, "--key", "k", "--json"]
        )
        out = capsys.readouterr().out
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert code == client.EXIT_OK, out
        assert events == burst.events


def test_the_order_stream_ends_with_the_servers_1000(burst):
    api = client.Api(burst.base_url, "k")
    followed = client.OrderStream(api, burst.order_id)
    assert list(followed) == burst.events
    assert followed.close_code == 1000
    assert burst.ws_connections == 1


def test_the_suites_stream_helper_gets_every_event_and_the_close(burst):
    for _ in range(20):
        result = stream(burst.ws_url())
        assert result.events == burst.events
        assert result.close_code == 1000
