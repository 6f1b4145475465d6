"""Per-account limits kept in Redis, so they hold across API processes and hosts (see
docs/design.md, "Access: keys, tickets, limits"). Each takes the account's own limit with each
call (None: the deployment's, given at construction), so accounts' limits differ.

- Request rate: a GCRA token bucket (a sustained rate with a burst). The script reads Redis's
  clock, so every API host agrees on time. A process takes several requests' worth of the
  bucket in one call when the limits are wide (`lease_size`) and spends them locally for at
  most LEASE_S: one script call per request became one per lease, for accounts allowed many
  requests a second. Nothing is ever granted beyond the bucket; what a lease leaves unspent
  is lost, so an account may get up to a lease less per process than its limit (and so is a
  lease taken at a rate the account no longer has). An account with a rate of its own has a
  bucket of its own for that rate: a bucket's state is a time, in units of its rate's interval,
  so a change of rate starts a new, full bucket instead of carrying over a debt measured at
  the old rate (hours of it, after a very low rate).
- Open WebSockets: a sorted set per account of socket ids scored by a lease expiry; a socket
  renews its lease while it is open and removes itself when it closes, and the lease bounds
  what a killed process can leave behind.
- Failed authentications, per client address rather than per account (a bad key has none): a
  counter per address that lives one window from its first failure.

The caps on orders in flight and on waiting orders are counted in PostgreSQL at intake
(repositories/intake.py), where the orders are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import redis

from order_engine.infra.batching import GroupCommit

RATE_PREFIX = "ratelimit:"
SOCKETS_PREFIX = "ws_open:"
FAILURES_PREFIX = "auth_failures:"

# KEYS[1]: the account's bucket. ARGV: emission interval (ms per request), burst, requests
# wanted. Grants as many of them as fit now (at least one, or none: refused).
# Returns {granted, remaining, retry_after_ms, reset_ms}.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local tolerance = burst * interval
local fit = math.floor((tolerance - (tat - now)) / interval)
if fit < 1 then
  return {0, 0, tat + interval - now - tolerance, tat - now}
end
local granted = math.min(wanted, fit)
local new_tat = tat + interval * granted
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, new_tat - now))
return {granted, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        # IETF draft-ietf-httpapi-ratelimit-headers: the burst, what is left of it, and
        # seconds until it is whole again.
        found = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            found["Retry-After"] = str(self.retry_after_s)
        return found


# How long a process may spend requests it took from an account's bucket ahead of need.
LEASE_S = 1.0
LEASE_MAX = 100


def lease_size(per_s: float, burst: int) -> int:
    """Requests taken from the bucket at once: a tenth of the burst, a tenth of a second's
    worth of the rate, LEASE_MAX, whichever is least, and 1 (every request asks Redis, as
    the shipped 20/s with a burst of 100 nearly does: 2) when the limits are narrow."""
    return max(1, min(burst // 10, int(per_s / 10), LEASE_MAX))


@dataclass
class _Lease:
    left: int
    until: float  # monotonic
    decision: RateDecision  # Redis's answer when the lease was taken
    rate: tuple[float, int]  # the (per_s, burst) it was taken at


class RateLimiter:
    def __init__(self, client: redis.Redis, per_s: float, burst: int) -> None:
        self.client = client
        self.per_s, self.burst = per_s, burst  # the deployment's, for accounts without their own
        self.lease_size = lease_size(per_s, burst)
        self._script = client.register_script(_GCRA)
        self._leases: dict[uuid.UUID, _Lease] = {}
        self._lock = threading.Lock()

    def hit(
        self, account_id: uuid.UUID, per_s: float | None = None, burst: int | None = None
    ) -> RateDecision:
        """Whether the account may make one more request now, with what to tell it; at the
        account's own rate and burst where given, else the deployment's."""
        rate = (self.per_s if per_s is None else per_s, self.burst if burst is None else burst)
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(account_id)
            if lease is not None and lease.left > 0 and now < lease.until and lease.rate == rate:
                lease.left -= 1
                return dataclasses.replace(
                    lease.decision, remaining=lease.decision.remaining + lease.left
                )
        granted, decision = self._take(account_id, lease_size(*rate), *rate)
        if granted > 1:
            with self._lock:
                if len(self._leases) >= LEASES_MAX:
                    self._leases.clear()
                self._leases[account_id] = _Lease(granted - 1, now + LEASE_S, decision, rate)
            decision = dataclasses.replace(decision, remaining=decision.remaining + granted - 1)
        return decision

    def _take(
        self, account_id: uuid.UUID, wanted: int, per_s: float, burst: int
    ) -> tuple[int, RateDecision]:
        """Up to `wanted` requests from the bucket (as many as fit) at this rate and burst: how
        many, and Redis's answer for the first."""
        interval_ms = max(1, round(1000 / per_s))
        bucket = f"{RATE_PREFIX}{account_id}"
        if (per_s, burst) != (self.per_s, self.burst):
            bucket += f":{interval_ms}:{burst}"
        granted, remaining, retry_ms, reset_ms = self._script(
            keys=[bucket], args=[interval_ms, burst, wanted]
        )
        decision = RateDecision(
            allowed=int(granted) > 0,
            limit=burst,
            remaining=int(remaining),
            retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)),
            reset_s=math.ceil(int(reset_ms) / 1000),
        )
        return int(granted), decision


# Accounts with a lease held at once by one process, at most (a memory bound).
LEASES_MAX = 10_000


SOCKET_LEASE_S = 60
SOCKET_RENEW_S = 20

# KEYS: each socket's account set (an account twice for two of its sockets). ARGV: now (s),
# lease expiry (s), then each socket's account's cap and the socket's id. Returns 1 (taken) or 0
# per socket, in order. Per account in the call, whatever its number of sockets: one sweep of
# expired leases, one count, one ZADD of every socket taken and one EXPIRE (a burst of one
# account's sockets cost four commands a socket when each was counted and added alone).
_TAKE_SLOTS = """
local now, expiry = ARGV[1], ARGV[2]
local open, added, order, taken = {}, {}, {}, {}
for i, key in ipairs(KEYS) do
  if open[key] == nil then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    open[key] = redis.call('ZCARD', key)
    added[key] = {}
    table.insert(order, key)
  end
  if open[key] >= tonumber(ARGV[1 + 2 * i]) then
    taken[i] = 0
  else
    open[key] = open[key] + 1
    table.insert(added[key], expiry)
    table.insert(added[key], ARGV[2 + 2 * i])
    taken[i] = 1
  end
end
for _, key in ipairs(order) do
  local members = added[key]
  for first = 1, #members, 1000 do  -- unpack's stack is bounded: 500 sockets a ZADD
    redis.call('ZADD', key, unpack(members, first, math.min(first + 999, #members)))
  end
  if #members > 0 then redis.call('EXPIRE', key, 3600) end
end
return taken
"""


class SocketSlots:
    """At most `cap` open WebSockets per account (or the account's own cap), across every API
    process.

    Sockets that open (or close) while another's take (or release) is in flight go together
    in the next round trip (`GroupCommit`): under a burst of connections each socket's own
    round trip was a tenth of the API's CPU."""

    def __init__(self, client: redis.Redis, cap: int) -> None:
        self.client = client
        self.cap = cap
        self._take = client.register_script(_TAKE_SLOTS)
        self._batches: GroupCommit[SocketSlot, bool] = GroupCommit("socket-slots", self._run)

    def take(self, account_id: uuid.UUID, cap: int | None = None) -> SocketSlot | None:
        """A slot for one more socket of the account, under its own `cap` where given; None
        when it has that many open."""
        slot = SocketSlot(
            self,
            f"{SOCKETS_PREFIX}{account_id}",
            uuid.uuid4().hex,
            cap=self.cap if cap is None else cap,
        )
        return slot if self._batches.submit("take", slot) else None

    def release(self, slot: SocketSlot) -> None:
        with contextlib.suppress(redis.RedisError):  # else the lease expires on its own
            self._batches.submit("release", slot)

    def _run(self, kind: Hashable, slots: Sequence[SocketSlot]) -> list[bool]:
        if kind == "take":
            now = time.time()
            each = [arg for slot in slots for arg in (slot.cap, slot.socket_id)]
            taken = self._take(
                keys=[slot.set_name for slot in slots], args=[now, now + SOCKET_LEASE_S, *each]
            )
            return [bool(int(answer)) for answer in taken]
        # One ZREM per account for every socket of it that closed meanwhile.
        closed: dict[str, list[str]] = {}
        for slot in slots:
            closed.setdefault(slot.set_name, []).append(slot.socket_id)
        pipe = self.client.pipeline(transaction=False)
        for set_name, socket_ids in closed.items():
            pipe.zrem(set_name, *socket_ids)
        pipe.execute()
        return [True] * len(slots)


@dataclass
class SocketSlot:
    slots: SocketSlots
    set_name: str
    socket_id: str
    renewed_at: float = 0.0
    cap: int = 0  # its account's, when it was taken

    def __post_init__(self) -> None:
        self.renewed_at = time.monotonic()

    def renew(self) -> None:
        """Extend the lease now and then while the socket is open (cheap to call often)."""
        if time.monotonic() - self.renewed_at < SOCKET_RENEW_S:
            return
        self.renewed_at = time.monotonic()
        # On a Redis error the lease still runs; a Redis outage is the stream's business.
        with contextlib.suppress(redis.RedisError):
            self.slots.client.zadd(self.set_name, {self.socket_id: time.time() + SOCKET_LEASE_S})

    def release(self) -> None:
        self.slots.release(self)


# KEYS[1]: the address's counter. ARGV[1]: the window (ms), from the first failure. Counts one
# failure; an expiry lost (a counter without one) is set again rather than count for ever.
_COUNT_FAILURE = """
if redis.call('INCR', KEYS[1]) == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
"""


class AuthFailures:
    """At most `limit` failed authentications per client address in a window of `window_s`
    from its first, across every API process; past them the address is refused until the
    window ends. Only what a look-up costs is counted and checked: a valid key an API process
    already trusts is served without either."""

    def __init__(self, client: redis.Redis, limit: int, window_s: int) -> None:
        self.client = client
        self.limit = limit
        self.window_ms = window_s * 1000
        self._count = client.register_script(_COUNT_FAILURE)

    def refused_for_s(self, address: str) -> int:
        """Seconds until `address` may try again; 0: it may now."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(f"{FAILURES_PREFIX}{address}")
        pipe.pttl(f"{FAILURES_PREFIX}{address}")
        failures, left_ms = pipe.execute()
        if failures is None or int(failures) < self.limit:
            return 0
        return max(1, math.ceil(int(left_ms) / 1000))

    def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        self._count(keys=[f"{FAILURES_PREFIX}{address}"], args=[self.window_ms])
