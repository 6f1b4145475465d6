"""API keys, scopes, ownership and per-account limits (docs/design.md), in process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest

from order_engine.api import access
from order_engine.app import create_app
from order_engine.errors import TooManyRequestsError, UnauthorizedError
from order_engine.live.limits import RateLimiter, lease_size
from order_engine.services.access import AccessService, redeem_ticket
from tests.support.clients import order_body
from tests.support.commits import on_test_session

pytestmark = pytest.mark.integration


def new_key(db_session, account: str, scopes=("orders:read", "orders:write")) -> str:
    """A key of the account, committed for real (the orders intake commits for it need the
    account committed) and deleted after the test with its orders (tests.support.commits)."""
    return db_session.info["commits"].key(account, scopes)


def as_key(app, key: str):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def make_app(app_settings, db_session, **overrides):
    return on_test_session(create_app({**app_settings, **overrides}), db_session)


def test_api_routes_need_a_key_and_say_so_in_the_envelope(anonymous_client):
    for method, path in [
        ("GET", "/api/orders"),
        ("POST", "/api/orders/execute"),
        ("GET", "/api/orders/00000000-0000-0000-0000-000000000000"),
        ("POST", "/api/stream-tickets"),
        ("GET", "/api/no-such-route"),
    ]:
        response = anonymous_client.open(path, method=method)
        assert response.status_code == 401, (method, path)
        body = response.get_json()
        assert body["code"] == 401
        assert "Bearer" in body["description"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer oe_deadbeef_" + "x" * 43,  # well formed, unknown
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_unknown_or_malformed_keys_are_401(anonymous_client, header):
    response = anonymous_client.get("/api/orders", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["message"] == "Unauthorized"


def test_probes_and_the_api_document_stay_open(anonymous_client):
    assert anonymous_client.get("/healthz").status_code == 200
    assert anonymous_client.get("/readyz").status_code == 200
    assert anonymous_client.get("/api/openapi.json").status_code == 200
    assert anonymous_client.get("/api/docs").status_code == 200


def test_a_read_only_key_may_read_but_not_submit_or_cancel(app, db_session):
    reader = as_key(app, new_key(db_session, "readers", ["orders:read"]))
    assert reader.get("/api/orders").status_code == 200
    response = reader.post("/api/orders/execute", json=order_body())
    assert response.status_code == 403
    assert "orders:write" in response.get_json()["description"]
    assert reader.delete("/api/orders/00000000-0000-0000-0000-000000000000").status_code == 403


def test_a_revoked_key_is_refused(app_settings, db_session, redis_client):
    app = make_app(app_settings, db_session, API_KEY_CACHE_S="0")
    key = new_key(db_session, "revocable")
    client = as_key(app, key)
    assert client.get("/api/orders").status_code == 200
    AccessService(db_session).revoke(key.split("_")[1])
    assert client.get("/api/orders").status_code == 401


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_cached_key_is_looked_up_again_by_one_request_past_half_its_life(
    app_settings, db_session, monkeypatch
):
    app = make_app(app_settings, db_session, API_KEY_CACHE_S="10")
    key = new_key(db_session, "cached")
    client = as_key(app, key)
    clock = Clock()
    monkeypatch.setattr(access, "time", clock)
    lookups = []
    authenticate = AccessService.authenticate

    def counted(self, raw_key):
        lookups.append(clock.now)
        return authenticate(self, raw_key)

    monkeypatch.setattr(AccessService, "authenticate", counted)
    assert client.get("/api/orders").status_code == 200
    clock.now += 4
    assert client.get("/api/orders").status_code == 200
    assert lookups == [1000.0]  # within half its life: not looked up
    clock.now += 2
    assert client.get("/api/orders").status_code == 200
    clock.now += 1
    assert client.get("/api/orders").status_code == 200
    assert lookups == [1000.0, 1006.0]  # looked up once, then fresh again
    # A revocation reaches this process at the next look-up, within the cache's life.
    AccessService(db_session).revoke(key.split("_")[1])
    clock.now += 5.5
    assert client.get("/api/orders").status_code == 401
    assert client.get("/api/orders").status_code == 401


def test_while_one_request_looks_a_key_up_again_the_others_use_the_cache(
    app_settings, db_session, monkeypatch
):
    app = make_app(app_settings, db_session, API_KEY_CACHE_S="10")
    client = as_key(app, new_key(db_session, "herd"))
    clock = Clock()
    monkeypatch.setattr(access, "time", clock)
    assert client.get("/api/orders").status_code == 200
    clock.now += 6
    answers = []

    def slow_lookup(self, raw_key):
        # Requests arriving while this look-up is in flight are served from the cache.
        answers.extend(client.get("/api/orders").status_code for _ in range(3))
        return authenticate(self, raw_key)

    authenticate = AccessService.authenticate
    monkeypatch.setattr(AccessService, "authenticate", slow_lookup)
    assert client.get("/api/orders").status_code == 200
    assert answers == [200, 200, 200]


@contextmanager
def handshake(app, ticket: str | None = None, key: str | None = None, address="127.0.0.1"):
    """A WebSocket handshake's pass through the guard, with a ticket or a key: the principal it
    stands for, while its socket slot is held (given back when the request context ends)."""
    path = f"/api/orders/execute?orderId={uuid.uuid4()}" + (f"&ticket={ticket}" if ticket else "")
    headers = {"Upgrade": "websocket", **({"Authorization": f"Bearer {key}"} if key else {})}
    environ = {"REMOTE_ADDR": address}
    with app.test_request_context(path, headers=headers, environ_base=environ):
        access.guard()
        yield access.current_principal()


def open_with_ticket(app, ticket: str):
    with handshake(app, ticket=ticket) as principal:
        return principal


def test_a_ticket_dies_with_its_key_within_the_key_cache_life(
    app_settings, db_session, redis_client, monkeypatch
):
    app = make_app(app_settings, db_session, API_KEY_CACHE_S="5")
    key = new_key(db_session, "ticketed")
    client = as_key(app, key)
    clock = Clock()
    monkeypatch.setattr(access, "time", clock)
    first, second = (client.post("/api/stream-tickets").get_json()["ticket"] for _ in range(2))
    assert open_with_ticket(app, first).scopes == {"orders:read", "orders:write"}
    AccessService(db_session).revoke(key.split("_")[1])
    clock.now += 6.5  # past API_KEY_CACHE_S after the revocation, within the ticket's 30 s
    with pytest.raises(UnauthorizedError):
        open_with_ticket(app, second)


def from_address(app, address: str, key: str | None = None):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if key is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def test_an_address_that_keeps_failing_to_authenticate_gets_429_and_no_other_does(
    app_settings, db_session, redis_client, monkeypatch
):
    limits = {"AUTH_FAILURE_LIMIT": "4", "AUTH_FAILURE_WINDOW_S": "60", "API_KEY_CACHE_S": "10"}
    # Two API processes (their own key caches and limiters) count the same address's failures.
    apps = [make_app(app_settings, db_session, **limits) for _ in range(2)]
    clock = Clock()
    monkeypatch.setattr(access, "time", clock)
    trusted = from_address(apps[0], "203.0.113.7", new_key(db_session, "trusted"))
    assert trusted.get("/api/orders").status_code == 200  # accepted, now in the key cache
    bad_key = "oe_deadbeef_" + "x" * 43
    attacker = [from_address(app, "203.0.113.7", bad_key) for app in apps]
    assert [attacker[n % 2].get("/api/orders").status_code for n in range(3)] == [401] * 3
    with pytest.raises(UnauthorizedError):  # a bad ticket is a failure too: the fourth
        open_with_ticket_from(apps[1], "t" * 43, "203.0.113.7")
    refused = attacker[0].get("/api/orders")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "failed" in refused.get_json()["description"]
    assert attacker[1].get("/api/orders").status_code == 429
    # Over the limit, even a good key or ticket from that address is not looked up; a key the
    # process already trusts is served, and refreshed, from its cache until it expires.
    fresh = new_key(db_session, "late")
    assert from_address(apps[0], "203.0.113.7", fresh).get("/api/orders").status_code == 429
    clock.now += 6  # past half the key's life: looked up again, not refused
    assert trusted.get("/api/orders").status_code == 200
    clock.now += 11  # past its whole life since that look-up: a key to look up like any other
    assert trusted.get("/api/orders").status_code == 429
    with pytest.raises(TooManyRequestsError):
        open_with_ticket_from(apps[1], "t" * 43, "203.0.113.7")
    # Another address is not slowed: its keys are looked up and served as ever.
    honest = from_address(apps[1], "198.51.100.9", new_key(db_session, "honest"))
    assert honest.get("/api/orders").status_code == 200
    assert from_address(apps[1], "198.51.100.9", bad_key).get("/api/orders").status_code == 401


def open_with_ticket_from(app, ticket: str, address: str):
    with handshake(app, ticket=ticket, address=address) as principal:
        return principal


def test_another_accounts_orders_do_not_exist_for_you(app, db_session):
    alice = as_key(app, new_key(db_session, "alice"))
    bob = as_key(app, new_key(db_session, "bob"))
    order_id = alice.post(
        "/api/orders/execute", json=order_body(clientOrderId="alice-1")
    ).get_json()["orderId"]
    assert bob.get(f"/api/orders/{order_id}").status_code == 404
    assert bob.delete(f"/api/orders/{order_id}").status_code == 404
    assert order_id not in [o["orderId"] for o in bob.get("/api/orders").get_json()["orders"]]
    # Still there, untouched, for its owner.
    assert alice.get(f"/api/orders/{order_id}").get_json()["status"] == "pending"
    assert order_id in [o["orderId"] for o in alice.get("/api/orders").get_json()["orders"]]


def test_an_admin_key_sees_every_account(app, db_session):
    alice = as_key(app, new_key(db_session, "alice"))
    admin = as_key(app, new_key(db_session, "ops", ["admin"]))
    order_id = alice.post("/api/orders/execute", json=order_body()).get_json()["orderId"]
    assert admin.get(f"/api/orders/{order_id}").status_code == 200


def test_idempotency_keys_are_per_account(app, db_session):
    alice = as_key(app, new_key(db_session, "alice"))
    bob = as_key(app, new_key(db_session, "bob"))
    headers = {"Idempotency-Key": "shared-key-1"}
    first = alice.post("/api/orders/execute", json=order_body(amount="0.1"), headers=headers)
    # Another body under the same key, from another account: a new order, not a 422 that
    # would tell Bob that Alice used this key.
    second = bob.post("/api/orders/execute", json=order_body(amount="0.2"), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.get_json()["orderId"] != second.get_json()["orderId"]
    replay = alice.post("/api/orders/execute", json=order_body(amount="0.1"), headers=headers)
    assert replay.get_json()["orderId"] == first.get_json()["orderId"]


def test_links_come_from_the_public_base_url_not_the_host_header(app_settings, db_session):
    app = make_app(app_settings, db_session, PUBLIC_BASE_URL="https://api.example.com")
    client = as_key(app, new_key(db_session, "linked"))
    response = client.post(
        "/api/orders/execute", json=order_body(), headers={"Host": "evil.example.net"}
    )
    links = response.get_json()["links"]
    assert links["self"].startswith("https://api.example.com/api/orders/")
    assert links["ws"].startswith("wss://api.example.com/api/orders/execute?orderId=")


def test_the_request_rate_is_limited_per_account_with_headers(
    app_settings, db_session, redis_client
):
    app = make_app(app_settings, db_session, RATE_LIMIT_PER_S="0.5", RATE_LIMIT_BURST="3")
    alice = as_key(app, new_key(db_session, "alice"))
    bob = as_key(app, new_key(db_session, "bob"))
    answers = [alice.get("/api/orders") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert answers[0].headers["RateLimit-Remaining"] == "2"
    limited = answers[-1]
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert limited.get_json()["code"] == 429
    # Bob's budget is his own.
    assert bob.get("/api/orders").status_code == 200


def test_orders_in_flight_are_capped_per_account(app_settings, db_session, redis_client):
    app = make_app(app_settings, db_session, MAX_ORDERS_IN_FLIGHT="2")
    alice = as_key(app, new_key(db_session, "alice"))
    bob = as_key(app, new_key(db_session, "bob"))
    for n in range(2):
        headers = {"Idempotency-Key": f"cap-{n}"}
        response = alice.post("/api/orders/execute", json=order_body(), headers=headers)
        assert response.status_code == 202
    refused = alice.post("/api/orders/execute", json=order_body())
    assert refused.status_code == 429
    assert "in flight" in refused.get_json()["description"]
    # A replay creates nothing, so it still answers; another account is not affected.
    replay = alice.post(
        "/api/orders/execute", json=order_body(), headers={"Idempotency-Key": "cap-0"}
    )
    assert replay.status_code == 202
    assert bob.post("/api/orders/execute", json=order_body()).status_code == 202
    # Finishing one frees a place.
    order_id = alice.get("/api/orders").get_json()["orders"][0]["orderId"]
    assert alice.delete(f"/api/orders/{order_id}").status_code == 200
    assert alice.post("/api/orders/execute", json=order_body()).status_code == 202


def test_waiting_orders_have_their_own_cap_apart_from_orders_in_flight(
    app_settings, db_session, redis_client
):
    app = make_app(app_settings, db_session, MAX_ORDERS_IN_FLIGHT="2", MAX_WAITING_ORDERS="3")
    alice = as_key(app, new_key(db_session, "alice"))
    waits = order_body(type="limit", limitPrice="1000000")  # far above the market: it waits
    for _ in range(3):
        assert alice.post("/api/orders/execute", json=waits).status_code == 202
    refused = alice.post("/api/orders/execute", json=waits)
    assert refused.status_code == 429
    assert "waiting" in refused.get_json()["description"]
    # Three waiting orders take no place from orders that run: market orders, and limit orders
    # met at submission (they run at once), count against the in-flight cap alone.
    assert alice.post("/api/orders/execute", json=order_body()).status_code == 202
    met = alice.post("/api/orders/execute", json=order_body(type="limit", limitPrice="0.0001"))
    assert met.status_code == 202
    refused = alice.post("/api/orders/execute", json=order_body())
    assert refused.status_code == 429
    assert "in flight" in refused.get_json()["description"]
    # Cancelling a waiting order frees a waiting place, not one in flight.
    waiting = [o for o in alice.get("/api/orders").get_json()["orders"] if o.get("waiting")]
    assert len(waiting) == 3
    assert alice.delete(f"/api/orders/{waiting[0]['orderId']}").status_code == 200
    assert alice.post("/api/orders/execute", json=order_body()).status_code == 429
    assert alice.post("/api/orders/execute", json=waits).status_code == 202


def test_an_accounts_own_limits_replace_the_defaults_within_the_key_cache_life(
    app_settings, db_session, redis_client, monkeypatch
):
    app = make_app(
        app_settings,
        db_session,
        API_KEY_CACHE_S="5",
        RATE_LIMIT_PER_S="0.5",
        RATE_LIMIT_BURST="3",
        MAX_ORDERS_IN_FLIGHT="1",
        MAX_WAITING_ORDERS="1",
        MAX_WEBSOCKETS="5",
    )
    key = new_key(db_session, "acme")
    acme = as_key(app, key)
    clock = Clock()
    monkeypatch.setattr(access, "time", clock)
    assert acme.get("/api/orders").headers["RateLimit-Limit"] == "3"
    own = {
        "rate_limit_per_s": 100.0,
        "rate_limit_burst": 50,
        "max_orders_in_flight": 2,
        "max_waiting_orders": 2,
        "max_websockets": 1,
    }
    AccessService(db_session).set_limits("acme", own)
    assert acme.get("/api/orders").headers["RateLimit-Limit"] == "3"  # the key as trusted
    clock.now += 5.5  # past API_KEY_CACHE_S: the key and its account's limits read again
    assert acme.get("/api/orders").headers["RateLimit-Limit"] == "50"
    waits = order_body(type="limit", limitPrice="1000000")
    for body in (order_body(), order_body(), waits, waits):
        assert acme.post("/api/orders/execute", json=body).status_code == 202
    assert acme.post("/api/orders/execute", json=order_body()).status_code == 429
    assert acme.post("/api/orders/execute", json=waits).status_code == 429
    # A second socket while the first is open:
    with (
        handshake(app, key=key),
        pytest.raises(TooManyRequestsError) as refused,
        handshake(app, key=key),
    ):
        pass
    assert "1 WebSockets" in refused.value.description
    # Cleared, each limit is the deployment's setting again.
    AccessService(db_session).set_limits("acme", dict.fromkeys(own))
    clock.now += 5.5
    assert acme.get("/api/orders").headers["RateLimit-Limit"] == "3"


def test_stream_tickets_are_one_use(client, redis_client):
    response = client.post("/api/stream-tickets")
    assert response.status_code == 201
    body = response.get_json()
    assert body["expiresInS"] > 0
    assert body["ws"].endswith(body["ticket"])
    principal = redeem_ticket(redis_client, body["ticket"])
    assert principal is not None
    assert "orders:read" in principal.scopes
    assert redeem_ticket(redis_client, body["ticket"]) is None


def test_a_ticket_is_not_a_key_for_rest(anonymous_client, client, redis_client):
    ticket = client.post("/api/stream-tickets").get_json()["ticket"]
    assert anonymous_client.get(f"/api/orders?ticket={ticket}").status_code == 401


def test_keys_cli_creates_lists_and_revokes(test_settings):
    env = {**os.environ, **test_settings}
    run = [sys.executable, "-m", "order_engine.ops.cli", "keys"]

    created = subprocess.run(
        [*run, "create", "--account", "cli-test", "--name", "bot", "--scopes", "orders:read"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("oe_")
    prefix = key.split("_")[1]
    listed = subprocess.run(
        [*run, "list"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert prefix in listed.stdout
    assert key not in listed.stdout  # never shown again
    app = create_app(test_settings)
    assert as_key(app, key).get("/api/orders").status_code == 200
    subprocess.run([*run, "revoke", prefix], env=env, timeout=60, check=True, capture_output=True)
    fresh = create_app(test_settings)  # a new process cache, as after API_KEY_CACHE_S
    assert as_key(fresh, key).get("/api/orders").status_code == 401
    bad = subprocess.run(
        [*run, "create", "--scopes", "orders:everything"], env=env, capture_output=True, timeout=60
    )
    assert bad.returncode == 2


def test_accounts_cli_sets_shows_and_clears_an_accounts_limits(test_settings):
    env = {**os.environ, **test_settings}
    cli = [sys.executable, "-m", "order_engine.ops.cli"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=60)

    key = run("keys", "create", "--account", "cli-limits").stdout.strip().splitlines()[-1]
    assert key.startswith("oe_")
    limits = ["--rate", "200", "--burst", "500", "--in-flight", "2000", "--waiting", "300"]
    changed = run("accounts", "set-limits", "cli-limits", *limits, "--sockets", "1000")
    assert changed.returncode == 0, changed.stderr
    shown = run("accounts", "show", "cli-limits")
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()[1:]}
    assert {name: values[0] for name, values in lines.items()} == {
        "rate": "200/s",
        "burst": "500",
        "in-flight": "2000",
        "waiting": "300",
        "sockets": "1000",
    }
    app = create_app(test_settings)
    assert as_key(app, key).get("/api/orders").headers["RateLimit-Limit"] == "500"
    # One cleared: the deployment's setting again, and said so.
    assert run("accounts", "set-limits", "cli-limits", "--burst", "default").returncode == 0
    shown = run("accounts", "show", "cli-limits").stdout
    burst = next(line for line in shown.splitlines() if line.split()[0] == "burst")
    assert "RATE_LIMIT_BURST" in burst
    assert burst.split()[1] == test_settings["RATE_LIMIT_BURST"]
    listed = run("accounts", "list")
    assert listed.returncode == 0
    assert any(line.startswith("cli-limits ") for line in listed.stdout.splitlines())
    # Bad input: a clear message, exit 2, nothing changed.
    for bad in (
        ["cli-limits", "--rate", "fast"],
        ["cli-limits", "--burst", "0"],
        ["cli-limits", "--sockets", "10", "--in-flight", "-1"],
        ["cli-limits"],
        ["no-such-account", "--rate", "5"],
    ):
        refused = run("accounts", "set-limits", *bad)
        assert refused.returncode == 2, bad
        assert refused.stderr.strip(), bad
    assert run("accounts", "show", "cli-limits").stdout == shown
    assert run("accounts", "show", "no-such-account").returncode == 2


class CountingLimiter(RateLimiter):
    """A RateLimiter (one API process's) that counts its calls to Redis."""

    calls = 0

    def _take(self, account_id, wanted, *rate):
        self.calls += 1
        return super()._take(account_id, wanted, *rate)


def test_wide_limits_are_taken_in_leases_and_never_grant_beyond_the_bucket(redis_client):
    account = uuid.uuid4()
    per_s, burst = 100.0, 200  # leases of 10
    processes = [CountingLimiter(redis_client, per_s, burst) for _ in range(2)]
    assert processes[0].lease_size == 10
    started = time.monotonic()
    decisions = [processes[n % 2].hit(account) for n in range(400)]
    elapsed_s = time.monotonic() - started
    allowed = sum(d.allowed for d in decisions)
    # Never more than the bucket held plus what refilled meanwhile; at most a lease less per
    # process than that (what each leaves unspent).
    assert allowed <= burst + per_s * elapsed_s + 1
    assert allowed >= burst - 2 * (processes[0].lease_size - 1)
    assert not decisions[-1].allowed
    assert decisions[-1].retry_after_s >= 1
    # One call per lease while the bucket lasted (the last ones partial), then one per refused
    # request, and at most one more per token that refilled meanwhile (a slow machine's run
    # lasts long enough to refill some, each granted alone): not one per request.
    refused = len(decisions) - allowed
    refilled = per_s * elapsed_s
    assert sum(p.calls for p in processes) - refused <= allowed / 10 + refilled + 4


def test_an_accounts_own_rate_replaces_the_default_and_its_lease(redis_client):
    account = uuid.uuid4()
    limiter = CountingLimiter(redis_client, 1.0, 2)  # the default: narrow, no leases
    assert [limiter.hit(account).allowed for _ in range(3)] == [True, True, False]
    own = {"per_s": 1000.0, "burst": 1000}  # wide: leases of 100
    assert limiter.hit(account, **own).limit == 1000
    calls = limiter.calls
    assert all(limiter.hit(account, **own).allowed for _ in range(50))
    assert limiter.calls == calls  # spent from its lease
    # The account's rate changed: the lease taken at the other one is not spent.
    assert limiter.hit(account, per_s=1.0, burst=2).limit == 2
    assert limiter.calls == calls + 1


def test_narrow_limits_ask_redis_for_every_request():
    assert lease_size(0.5, 3) == 1
    assert lease_size(20, 100) == 2  # the shipped defaults
    assert lease_size(1_000_000, 1_000_000) == 100
