"""The operators' dashboard: admin only, rendered on the server, then fed by a WebSocket that a
browser opens with a one-use ticket; and, in a real headless Chromium, orders submitted while
the page is open appear on it and reach `confirmed`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.support.clients import TEST_API_KEY, WsClient, order_body, request

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEST_OUTPUT = PROJECT_ROOT / "test-output"  # git-ignored


@pytest.fixture(scope="module")
def admin_key(engine) -> str:
    from order_engine.services.access import AccessService

    with Session(engine, expire_on_commit=False) as session:
        return AccessService(session).create_key("operators", "dashboard", ["admin"]).secret


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"operator:{key}".encode()).decode()}


def test_the_page_needs_an_admin_key_and_is_rendered_with_the_orders(live_stack, admin_key):
    page = f"{live_stack.base_url}/dashboard"
    status, headers, body = get(page)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")  # the browser's login prompt
    assert json.loads(body)["code"] == 401
    status, _, _ = get(page, {"Authorization": f"Bearer {TEST_API_KEY}"})
    assert status == 403  # orders:read and orders:write, not admin

    order_id = request("POST", f"{live_stack.base_url}/api/orders/execute", order_body()).body[
        "orderId"
    ]
    stop = order_body(type="stop", triggerPrice="1")  # far under the market: it waits
    waiting_id = request("POST", f"{live_stack.base_url}/api/orders/execute", stop).body["orderId"]
    for credentials in ({"Authorization": f"Bearer {admin_key}"}, basic(admin_key)):
        status, headers, body = get(page, credentials)
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert "script-src 'nonce-" in headers["Content-Security-Policy"]
        assert f'data-order-id="{order_id}"' in body  # server-rendered, before any script runs
        assert f'data-waiting-id="{waiting_id}"' in body  # with what it waits for
        assert "<td>≤ 1</td>" in body
        assert "<script src=" not in body  # nothing fetched from elsewhere
    request("DELETE", f"{live_stack.base_url}/api/orders/{waiting_id}")


def test_the_stream_takes_a_ticket_for_an_admin_key_only(live_stack, admin_key):
    refused = request(
        "POST", f"{live_stack.base_url}/dashboard/ticket", headers=basic(TEST_API_KEY)
    )
    assert refused.status == 403
    issued = request("POST", f"{live_stack.base_url}/dashboard/ticket", headers=basic(admin_key))
    assert issued.status == 201
    ws = WsClient.connect(
        f"{live_stack.ws_url}/api/dashboard/stream?ticket={issued.body['ticket']}",
        headers={"Authorization": ""},
    )
    try:
        snapshot = json.loads(ws.receive(timeout=10))
    finally:
        ws.close()
    assert set(snapshot) >= {
        "ordersPerSecond", "inFlight", "finished", "failureCodes", "latency", "queueDepth",
        "latest", "waiting", "twap", "landing",
    }  # fmt: skip
    assert set(snapshot["inFlight"]) == {"pending", "routing", "building", "submitted"}
    assert {"running", "slicesInFlight"} <= set(snapshot["twap"])
    assert set(snapshot["landing"]) == {"bundle", "rpc"}
    assert {"landed", "bundleFailed", "expired", "landedShare", "slotsP50"} <= set(
        snapshot["landing"]["bundle"]
    )
    # a ticket is used once
    with pytest.raises(Exception, match="401"):
        WsClient.connect(
            f"{live_stack.ws_url}/api/dashboard/stream?ticket={issued.body['ticket']}",
            headers={"Authorization": ""},
        )
    # an orders:read ticket is not an admin's
    reader_ticket = request("POST", f"{live_stack.base_url}/api/stream-tickets").body["ticket"]
    with pytest.raises(Exception, match="403"):
        WsClient.connect(
            f"{live_stack.ws_url}/api/dashboard/stream?ticket={reader_ticket}",
            headers={"Authorization": ""},
        )


def chromium_or_skip() -> str:
    """Debian's Chromium, installed with apt-get when missing (as root), or a clear skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed and apt-get cannot install it here (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    for attempt in (install, ["apt-get", "update"], install):
        done = subprocess.run(attempt, env=env, capture_output=True, text=True, timeout=900)
        if attempt is install and done.returncode == 0:
            break
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"could not install Debian's chromium: {done.stderr[-500:]}")
    return found


def test_orders_appear_and_reach_confirmed_live_in_headless_chromium(live_stack, admin_key):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    chromium = chromium_or_skip()
    # The page's origin is the configured public one, as a browser would be sent to.
    page_url = f"http://localhost:{live_stack.settings['PORT']}/dashboard"
    TEST_OUTPUT.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(
                http_credentials={"username": "operator", "password": admin_key},
                viewport={"width": 1400, "height": 900},
            )
            page = context.new_page()
            page.goto(page_url)
            page.wait_for_selector("#state.live", timeout=15_000)  # the socket delivers
            order_ids = [
                request(
                    "POST",
                    f"{live_stack.base_url}/api/orders/execute",
                    order_body(amount=f"0.{n + 31}"),
                ).body["orderId"]
                for n in range(3)
            ]
            for order_id in order_ids:
                page.wait_for_selector(
                    f'tr[data-order-id="{order_id}"] td.status-confirmed', timeout=30_000
                )
            assert int(page.text_content('[data-finished="confirmed"]') or "0") >= 3
            page.screenshot(path=str(TEST_OUTPUT / "dashboard.png"), full_page=True)
        finally:
            browser.close()
