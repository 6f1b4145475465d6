"""`order-engine submit … --watch` and `order-engine orders …`: the installed command against a
running API and worker, as an integrator would use it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from order_engine import client
from tests.support.clients import TEST_API_KEY, order_body, request
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

COMMAND = str(Path(sys.executable).parent / "order-engine")


def run(stack, *args: str, key: str | None = TEST_API_KEY, timeout_s: float = 60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_ENGINE_")}
    env.update({"ORDER_ENGINE_URL": stack.base_url, "COLUMNS": "200"})
    if key:
        env["ORDER_ENGINE_API_KEY"] = key
    return subprocess.run(
        [COMMAND, *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def test_submit_watch_shows_each_status_and_the_fill_and_exits_0(live_stack):
    done = run(live_stack, "submit", "SOL", "USDC", "0.15", "--slippage", "300", "--watch")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    order_id = re.search(r"order ([0-9a-f-]{36}) accepted", out).group(1)
    for status in ("pending", "routing", "building", "submitted", "confirmed"):
        assert status in out, out
    order = request("GET", f"{live_stack.base_url}/api/orders/{order_id}").body
    assert order["status"] == "confirmed"
    assert f"txHash {order['txHash']}" in out
    assert f"confirmed on {order['dex']}" in out
    assert order["executedPrice"] in out


def test_a_failed_order_exits_non_zero_with_its_error_code(live_stack):
    tag = f"cli-fail-{uuid.uuid4()}"
    live_stack.plant_faults(tag, *["rpc_unavailable"] * 3)
    done = run(
        live_stack,
        "submit", "SOL", "USDC", "0.15", "--slippage", "300", "--client-order-id", tag, "--watch",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed ATTEMPTS_EXHAUSTED" in done.stdout
    assert "RPC_UNAVAILABLE" in done.stdout  # the failed attempts on the way


def test_orders_list_show_watch_and_cancel(live_stack):
    accepted = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body())
    order_id = accepted.body["orderId"]
    watched = run(live_stack, "orders", "watch", order_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "confirmed" in watched.stdout

    shown = run(live_stack, "orders", "show", order_id, "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["status"] == "confirmed"
    listed = run(live_stack, "orders", "list", "--status", "confirmed", "--limit", "50")
    assert listed.returncode == 0
    assert order_id in listed.stdout

    # too late to cancel: the API's 409 and its reason, exit 4
    cancelled = run(live_stack, "orders", "cancel", order_id)
    assert cancelled.returncode == 4
    assert "error 409" in cancelled.stderr


@pytest.mark.parametrize(
    ("flags", "shown"),
    [
        (["--type", "stop", "--trigger-price", "1"], {"triggerPrice": "1"}),
        (
            ["--type", "oco", "--take-profit", "1000000", "--stop-loss", "1"],
            {"takeProfit": {"limitPrice": "1000000"}, "stopLoss": {"triggerPrice": "1"}},
        ),
        (
            ["--type", "trailing_stop", "--trail-bps", "500", "--activation-price", "1000000"],
            {"trailBps": 500, "activationPrice": "1000000"},
        ),
    ],
)
def test_stops_brackets_and_trailing_stops_are_submitted_with_their_flags(live_stack, flags, shown):
    done = run(live_stack, "submit", "SOL", "USDC", "0.15", *flags, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    order_id = json.loads(done.stdout)["orderId"]
    order = json.loads(run(live_stack, "orders", "show", order_id, "--json").stdout)
    assert {name: order[name] for name in shown} == shown
    assert (order["waiting"], order["slippageBps"]) == (True, 300)
    assert run(live_stack, "orders", "cancel", order_id).returncode == 0


def test_an_order_says_how_it_lands_with_flags(live_stack):
    flags = ["--priority-fee", "30000", "--max-fee-lamports", "200000", "--no-mev-protection"]
    done = run(live_stack, "submit", "SOL", "USDC", "0.15", "--slippage", "300", *flags, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    url = f"{live_stack.base_url}/api/orders/{json.loads(done.stdout)['orderId']}"
    order = wait_until(
        lambda: (o := request("GET", url).body)["status"] in client.FINAL and o,
        60,
        "the order to finish",
    )
    assert order["status"] == "confirmed"
    assert (order["priorityFee"], order["maxFeeLamports"], order["mevProtection"]) == (
        {"microLamportsPerCu": 30000},
        200000,
        False,
    )
    # Public, at the price asked (the cap leaves it whole: 30,000 µlamports × the limit).
    assert order["landing"]["via"] == "rpc"
    assert order["fees"]["microLamportsPerCu"] == 30000
    assert order["fees"]["tipLamports"] == 0

    refused = run(live_stack, "submit", "SOL", "USDC", "0.15", "--priority-fee", "cheap")
    assert refused.returncode == 2  # argparse's usage error, before any request
    assert "micro-lamports per compute unit" in refused.stderr


def test_refusals_are_clear_messages_not_tracebacks(live_stack):
    invalid = run(live_stack, "submit", "SOL", "USDC", "1e3")
    assert invalid.returncode == 4
    assert "error 422" in invalid.stderr
    assert "amount" in invalid.stderr
    assert "Traceback" not in invalid.stderr

    no_key = run(live_stack, "orders", "list", key=None)
    assert no_key.returncode == 4
    assert "error 401" in no_key.stderr

    unknown = run(live_stack, "orders", "show", str(uuid.uuid4()))
    assert unknown.returncode == 4
    assert "error 404" in unknown.stderr

    unreachable = run(live_stack, "orders", "list", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 4
    assert "cannot reach the API" in unreachable.stderr


def test_a_finished_orders_replay_gets_every_event_and_a_1000_close_every_time(
    live_stack, monkeypatch, capsys
):
    """For a finished order the API sends the 101, every event and the close at once; a client
    that reads the handshake alone lost them about 1 time in 13 (no events, 1005, exit 4)."""
    accepted = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body())
    order_id = accepted.body["orderId"]
    url = f"{live_stack.base_url}/api/orders/{order_id}"
    order = wait_until(
        lambda: (o := request("GET", url).body)["status"] in client.FINAL and o,
        60,
        "the order to finish",
    )
    streams: list[client.OrderStream] = []

    class Recorded(client.OrderStream):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            streams.append(self)

    monkeypatch.setattr(client, "OrderStream", Recorded)
    argv = ["orders", "watch", order_id, "--url", live_stack.base_url, "--key", TEST_API_KEY]
    for replay in range(200):
        code = client.main([*argv, "--json"])
        out = capsys.readouterr().out
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert code == client.FINAL[order["status"]], f"replay {replay}: {out}"
        assert events == order["events"], f"replay {replay}"
        assert streams[-1].close_code == 1000, f"replay {replay}"
    assert len(streams) == 200


def test_a_limit_order_submitted_to_expire_in_an_hour(live_stack):
    done = run(
        live_stack,
        "submit", "SOL", "USDC", "0.15", "--type", "limit", "--limit-price", "100000",
        "--expires-in", "1h", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    order_id = json.loads(done.stdout)["orderId"]
    order = request("GET", f"{live_stack.base_url}/api/orders/{order_id}").body
    assert order["waiting"] is True
    assert order["expiresAt"] > order["createdAt"]
    both = run(live_stack, "submit", "SOL", "USDC", "1", "--expires-in", "1h", "--expires-at", "x")
    assert both.returncode == 2  # one or the other (argparse)
    assert run(live_stack, "orders", "cancel", order_id).returncode == 0


def test_orders_export_writes_every_order_of_the_range_as_csv_or_ndjson(live_stack):
    accepted = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body())
    order_id = accepted.body["orderId"]
    assert run(live_stack, "orders", "watch", order_id).returncode == 0
    since = request("GET", f"{live_stack.base_url}/api/orders/{order_id}").body["createdAt"]
    as_csv = run(live_stack, "orders", "export", "--since", since)
    assert as_csv.returncode == 0, as_csv.stderr
    header, *rows = as_csv.stdout.splitlines()
    assert header.startswith("orderId,parentId,sliceIndex,type,status,")
    mine = [row for row in rows if row.startswith(order_id)]
    assert len(mine) == 1
    assert ",confirmed," in mine[0]
    assert f"{len(rows)} orders exported" in as_csv.stderr
    as_json = run(live_stack, "orders", "export", "--since", since, "--format", "ndjson")
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [line["orderId"] for line in lines] == [row.split(",")[0] for row in rows]
    refused = run(live_stack, "orders", "export", "--since", "yesterday")
    assert refused.returncode == 4
    assert "error 422" in refused.stderr
