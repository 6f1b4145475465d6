"""Who may call what: API keys, scopes, stream tickets, per-account limits and a limit on
failed authentications per client address.

Every `/api/*` request passes `guard()` before its view: the caller is identified by
`Authorization: Bearer <key>` (or, on a WebSocket handshake only, a one-use `?ticket=`), the
view's scope is checked (a view without `@requires` under `/api/` is refused: new routes are
closed until someone decides who may call them), and the account's request rate is counted. A
WebSocket handshake also has its `Origin` checked and takes one of the account's socket slots,
released when the socket ends. Only the documentation and the health probes are open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from redis.backoff import NoBackoff
from redis.retry import Retry

from order_engine.errors import (
    ForbiddenError,
    TooManyRequestsError,
    UnauthorizedError,
)
from order_engine.infra.db import get_session
from order_engine.infra.redis_client import get_redis
from order_engine.live.limits import AuthFailures, RateDecision, RateLimiter, SocketSlots
from order_engine.services.access import (
    AccessService,
    AccountLimits,
    Principal,
    hash_key,
    issue_ticket,
    redeem_ticket,
)

log = logging.getLogger(__name__)
bp = Blueprint("access", __name__)

F = TypeVar("F", bound=Callable[..., Any])

# Open without a key: they carry no account's data.
PUBLIC_ENDPOINTS = frozenset({"docs.openapi", "docs.browsable", "docs.docs_asset"})
# After a Redis error the rate limiter and the socket cap stand aside this long (per process)
# instead of adding a Redis timeout to every request; the in-flight cap, in PostgreSQL, holds.
LIMITER_BACKOFF_S = 5.0
KEY_CACHE_MAX = 10_000


def requires(scope: str) -> Callable[[F], F]:
    """Mark a view with the scope its caller's key must have."""

    def mark(view: F) -> F:
        view.required_scope = scope  # type: ignore[attr-defined]
        return view

    return mark


def current_principal() -> Principal:
    return g.principal


def account_limits() -> AccountLimits:
    """The caller's account's limits: its own where it has them (read with its key), else the
    deployment's settings."""
    return current_principal().limits.over(current_app.config["SETTINGS"])


def is_websocket_handshake() -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def guard() -> None:
    if not request.path.startswith("/api/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    principal = _authenticate()
    g.principal = principal
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None:
        scope = getattr(view, "required_scope", None)
        if scope is None:
            raise ForbiddenError("This route is not open to API keys.")
        if not principal.can(scope):
            raise ForbiddenError(
                f"This API key lacks the {scope!r} scope.", errors={"scope": [scope]}
            )
    decision = _rate_limit(principal)
    if decision is not None:
        g.rate_decision = decision
        if not decision.allowed:
            raise TooManyRequestsError(
                f"Rate limit exceeded for this account; retry after {decision.retry_after_s}s.",
                headers=decision.headers(),
            )
    if is_websocket_handshake() and view is not None:
        _check_origin()
        _take_socket_slot(principal)


def _authenticate() -> Principal:
    settings = current_app.config["SETTINGS"]
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    ticket = request.args.get("ticket")
    if scheme.lower() == "basic" and ticket is not None and is_websocket_handshake():
        # A browser that logged in to an operators' page (HTTP Basic) sends those credentials
        # on its WebSockets too; the socket is authorised by its ticket.
        header = ""
    if header and scheme.lower() == "bearer" and credentials.strip():
        principal = _cached_key(credentials.strip(), settings.api_key_cache_s)
        if principal is None:
            raise UnauthorizedError("The API key is not valid (unknown, malformed or revoked).")
        return principal
    if header:
        raise UnauthorizedError("Send the API key as `Authorization: Bearer <key>`.")
    if ticket is not None and is_websocket_handshake():
        principal = _redeemed_ticket(ticket, settings.api_key_cache_s)
        if principal is None:
            raise UnauthorizedError(
                "The stream ticket is not valid: unknown, expired or already used. Get a new "
                "one from POST /api/stream-tickets."
            )
        return principal
    raise UnauthorizedError(
        "An API key is required: `Authorization: Bearer <key>` (create one with "
        "`order-engine keys create`); browsers opening a WebSocket use `?ticket=` from "
        "POST /api/stream-tickets."
    )


_cache_lock = threading.Lock()


@dataclass
class _CachedKey:
    at: float
    principal: Principal
    refreshing: bool = False


def _cached_key(raw_key: str, ttl_s: int) -> Principal | None:
    """The principal of a valid key, remembered for `API_KEY_CACHE_S` seconds (so a revocation
    takes at most that long to reach every process); anything else is looked up every time."""
    return _cached(
        hash_key(raw_key),
        ttl_s,
        lambda: AccessService(get_session()).authenticate(raw_key),
        gate=_counted,
    )


def _redeemed_ticket(ticket: str, ttl_s: int) -> Principal | None:
    """The principal a stream ticket stands for, while its key does: the key is checked again
    (cached as the key itself is), so a ticket issued before a revocation dies with its key
    within `API_KEY_CACHE_S`, not at the end of the ticket's own life."""

    def redeem() -> Principal | None:
        issued = redeem_ticket(get_redis(), ticket)
        if issued is None:
            return None
        key_id = issued.key_id
        return _cached(
            f"key-id:{key_id}",
            ttl_s,
            lambda: AccessService(get_session()).principal_of_key(key_id),
        )

    return _counted(redeem)


def _counted(attempt: Callable[[], Principal | None]) -> Principal | None:
    """`attempt()`, an authentication that costs a look-up, unless the caller's address has
    failed AUTH_FAILURE_LIMIT times lately (429 until its window ends, across processes); a
    failure (None) is counted against the address. The address is the peer's: behind a proxy,
    the proxy's (docs/operating.md)."""
    failures = _auth_failures()
    if failures is None:
        return attempt()
    address = request.remote_addr or ""
    try:
        refused_for_s = failures.refused_for_s(address)
    except redis.RedisError as exc:
        _limiters_down(exc)
        return attempt()
    if refused_for_s:
        raise TooManyRequestsError(
            f"Too many failed authentications from this address; retry after {refused_for_s}s.",
            headers={"Retry-After": str(refused_for_s)},
        )
    principal = attempt()
    if principal is None:
        try:
            failures.failed(address)
        except redis.RedisError as exc:
            _limiters_down(exc)
    return principal


def _auth_failures() -> AuthFailures | None:
    """This app's counter of failed authentications; None while there is no limit to apply
    (AUTH_FAILURE_LIMIT 0, or Redis failed just now)."""
    settings = current_app.config["SETTINGS"]
    if not settings.auth_failure_limit or time.monotonic() < _limiter_down_until:
        return None
    failures: AuthFailures | None = current_app.extensions.get("order_engine.auth_failures")
    if failures is None:
        failures = current_app.extensions["order_engine.auth_failures"] = AuthFailures(
            _limits_redis(), settings.auth_failure_limit, settings.auth_failure_window_s
        )
    return failures


def _cached(
    name: str,
    ttl_s: int,
    look_up: Callable[[], Principal | None],
    gate: Callable[[Callable[[], Principal | None]], Principal | None] = lambda f: f(),
) -> Principal | None:
    """`look_up()`'s principal, remembered under `name` for `ttl_s` seconds when there is one.
    A look-up of what is not remembered (or no longer) goes through `gate(look_up)`; the
    refresh of an entry still trusted does not.

    Past half its life, an entry is looked up again by one request while the others go on
    using it: had it simply expired, every request in flight at that moment (dozens, under
    load) would have looked the key up at once (3 % of the API's CPU under the peer load)."""
    cache: dict[str, _CachedKey] = current_app.extensions.setdefault("order_engine.key_cache", {})
    now = time.monotonic()
    hit = cache.get(name)
    if hit is not None and now - hit.at < ttl_s:
        if now - hit.at < ttl_s / 2:
            return hit.principal
        with _cache_lock:
            refreshing, hit.refreshing = hit.refreshing, True
        if refreshing:
            return hit.principal  # another request is looking it up
    try:
        principal = look_up() if hit is not None and now - hit.at < ttl_s else gate(look_up)
    except BaseException:
        if hit is not None:
            hit.refreshing = False  # the next request tries again
        raise
    with _cache_lock:
        if principal is None or ttl_s <= 0:
            cache.pop(name, None)
        else:
            if len(cache) >= KEY_CACHE_MAX:
                cache.clear()
            cache[name] = _CachedKey(now, principal)
    return principal


_limiter_down_until = 0.0


def _rate_limit(principal: Principal) -> RateDecision | None:
    if time.monotonic() < _limiter_down_until:
        return None
    limiter: RateLimiter | None = current_app.extensions.get("order_engine.rate_limiter")
    if limiter is None:
        settings = current_app.config["SETTINGS"]
        limiter = current_app.extensions["order_engine.rate_limiter"] = RateLimiter(
            _limits_redis(), settings.rate_limit_per_s, settings.rate_limit_burst
        )
    own = principal.limits  # the account's own; None: the limiter's, the deployment's
    try:
        return limiter.hit(principal.account_id, own.rate_limit_per_s, own.rate_limit_burst)
    except redis.RedisError as exc:
        _limiters_down(exc)
        return None


# The limits' own Redis client: a limit that cannot be checked in this long is skipped (and
# the limits stand aside for LIMITER_BACKOFF_S), so a frozen Redis adds at most this to a
# request, not the application client's bound of several seconds.
LIMITS_REDIS_TIMEOUT_S = 0.25


def _limits_redis() -> redis.Redis:
    settings = current_app.config["SETTINGS"]
    client: redis.Redis | None = current_app.extensions.get("order_engine.limits_redis")
    if client is None:
        client = current_app.extensions["order_engine.limits_redis"] = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=LIMITS_REDIS_TIMEOUT_S,
            socket_connect_timeout=LIMITS_REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    return client


def _limiters_down(exc: Exception) -> None:
    global _limiter_down_until
    _limiter_down_until = time.monotonic() + LIMITER_BACKOFF_S
    log.warning("limits unavailable (%s); not limiting for %ss", exc, LIMITER_BACKOFF_S)


# A 429 is answered after a pause. A client that ignores Retry-After and sends
# back to back on its connections then waits on each 429, so a flood from a few connections
# costs the server a few answers per second instead of all its CPU (which would slow every
# other account's requests). Only under gevent, where a waiting request is a cheap greenlet;
# under gthread it would hold one of the worker's threads.
TARPIT_MAX_S = 1.0


def _tarpit(response: Response) -> None:
    from gevent import monkey

    if monkey.is_module_patched("time"):
        try:
            retry_after_s = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after_s = 1.0
        time.sleep(min(max(retry_after_s, 0.0), TARPIT_MAX_S))


def _check_origin() -> None:
    """Browsers send `Origin` on every WebSocket and apply no same-origin policy to it, so a
    page anywhere could drive a visitor's socket. A page of the origin the request was sent to
    (its scheme and `Host`) may, as a page may call its own server; pages of other origins only
    if listed. Clients that are not browsers send no Origin and are let through (they hold a key
    or a ticket anyway)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = current_app.config["SETTINGS"].ws_allowed_origins
    origin = origin.lower().rstrip("/")
    own = f"{request.scheme}://{request.host}".lower()
    if origin == own or "*" in allowed or origin in allowed:
        return
    raise ForbiddenError(
        f"Origin {origin!r} may not open WebSockets here: it is neither this server's origin nor "
        "in WS_ALLOWED_ORIGINS.",
        errors={"Origin": ["Not this server's origin, nor in the allow-list."]},
    )


def _take_socket_slot(principal: Principal) -> None:
    settings = current_app.config["SETTINGS"]
    cap = account_limits().max_websockets
    slots: SocketSlots | None = current_app.extensions.get("order_engine.socket_slots")
    if slots is None:
        slots = current_app.extensions["order_engine.socket_slots"] = SocketSlots(
            _limits_redis(), settings.max_websockets
        )
    if time.monotonic() < _limiter_down_until:
        return  # Redis just failed: no slot to take; the stream says if it cannot be served
    try:
        slot = slots.take(principal.account_id, cap)
    except redis.RedisError as exc:
        _limiters_down(exc)
        return
    if slot is None:
        raise TooManyRequestsError(
            f"This account already has {cap} WebSockets open (its limit, by default "
            "MAX_WEBSOCKETS); close one first.",
            headers={"Retry-After": "5"},
        )
    g.socket_slot = slot


def release_socket_slot(_exc: BaseException | None = None) -> None:
    slot = g.pop("socket_slot", None)
    if slot is not None:
        slot.release()


def add_rate_headers(response: Response) -> Response:
    decision: RateDecision | None = g.get("rate_decision")
    if decision is not None:
        for name, value in decision.headers().items():
            response.headers.setdefault(name, value)
    if response.status_code == 429:
        _tarpit(response)
    return response


@bp.post("/api/stream-tickets")
@requires("orders:read")
def create_stream_ticket() -> tuple[Response, int]:
    """A one-use ticket for a browser's WebSocket (`?ticket=`), valid a few seconds.
    ---
    post:
      summary: A one-use stream ticket for a browser's WebSocket
      description: >-
        Browsers cannot set headers on a WebSocket: open it with
        ?ticket=<ticket> (plus orderId, afterSeq) within expiresInS seconds. The
        ticket stands for this key, once.
      responses:
        "201":
          description: The ticket
          content:
            application/json:
              schema: StreamTicket
        "401": Unauthorized
        "403": Forbidden
        "429": TooManyRequests
        "503": Unavailable
    """
    settings = current_app.config["SETTINGS"]
    ticket = issue_ticket(get_redis(), current_principal(), settings.stream_ticket_ttl_s)
    return jsonify(
        ticket=ticket,
        expiresInS=settings.stream_ticket_ttl_s,
        ws=f"{settings.public_ws_url}/api/orders/execute?ticket={ticket}",
    ), 201


def operator_principal(*, loopback_is_enough: bool) -> Principal | None:
    """The caller of an operators' page outside `/api/` (`/metrics`, `/dashboard`): a key with
    the `admin` scope, as `Authorization: Bearer <key>` or as HTTP Basic with the key as the
    password (what a browser's login prompt and Prometheus's `basic_auth` send).

    With `loopback_is_enough`, a request from this host (a loopback peer, not relayed by a
    proxy) needs no key: None is returned. Raises 401 / 403 otherwise (never open
    without credentials beyond loopback)."""
    header = request.headers.get("Authorization", "")
    if not header and loopback_is_enough and _from_loopback():
        return None
    scheme, _, credentials = header.partition(" ")
    raw_key = credentials.strip()
    if scheme.lower() == "basic" and raw_key:
        import base64
        import binascii

        try:
            raw_key = base64.b64decode(raw_key, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            raw_key = ""
    elif scheme.lower() != "bearer":
        raw_key = ""
    if not raw_key:
        raise OperatorUnauthorized(
            "An API key with the 'admin' scope is required: `Authorization: Bearer <key>`, or "
            "HTTP Basic with the key as the password."
        )
    principal = _cached_key(raw_key, current_app.config["SETTINGS"].api_key_cache_s)
    if principal is None:
        raise OperatorUnauthorized("The API key is not valid (unknown, malformed or revoked).")
    if "admin" not in principal.scopes:
        raise ForbiddenError("This API key lacks the 'admin' scope.", errors={"scope": ["admin"]})
    return principal


class OperatorUnauthorized(UnauthorizedError):
    """A 401 that also offers HTTP Basic, so that a browser shows its login prompt."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.headers = {"WWW-Authenticate": 'Basic realm="order-engine operators"'}


def _from_loopback() -> bool:
    import ipaddress

    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False  # relayed: the real client is elsewhere
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def init_app(app: Flask) -> None:
    app.before_request(guard)
    app.after_request(add_rate_headers)
    app.teardown_request(release_socket_slot)
    app.register_blueprint(bp)
