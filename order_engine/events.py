"""Lifecycle events: their wire shape, and their publication to Redis.

After each transition commits, the worker writes the order's live snapshot under
`active_order:<id>` and publishes the event on `order:<id>`, in one atomic script that refuses
to move the snapshot backwards (a stale worker's late publish cannot overwrite a newer state).
Pub/sub is at-most-once, so subscribers also replay from PostgreSQL by `seq`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import redis

from order_engine.models import OrderEvent, OrderStatus

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "order:"
SNAPSHOT_PREFIX = "active_order:"
ACTIVE_SNAPSHOT_TTL_S = 7 * 24 * 3600

# One call publishes any number of committed events (in seq order). For each i:
# KEYS[i] the order's snapshot key; ARGV[2i-1] the event JSON (which starts with its orderId
# and seq), ARGV[2i] the snapshot's TTL in seconds. The snapshot is the latest event's JSON,
# written only over an older one: a stale worker's late publish cannot move it backwards.
# Per event: PUBLISH; per order in the call, for its last event: GET, SET … EX (one commit's
# routing and building events write the snapshot once; a script runs atomically, so nobody
# reads the snapshot between them). An older, hash-typed snapshot is simply replaced.
_PUBLISH_SCRIPT = f"""
local prefix = #'{SNAPSHOT_PREFIX}' + 1
local last = {{}}
for i, key in ipairs(KEYS) do
  last[key] = i
end
for i, key in ipairs(KEYS) do
  local event, ttl = ARGV[2 * i - 1], ARGV[2 * i]
  if last[key] == i then
    local seq = tonumber(string.match(event, '"seq":(%d+)'))
    local current = redis.pcall('GET', key)
    local current_seq = 0
    if type(current) == 'string' then
      current_seq = tonumber(string.match(current, '"seq":(%d+)')) or 0
    end
    if seq > current_seq then
      redis.call('SET', key, event, 'EX', ttl)
    end
  end
  redis.call('PUBLISH', '{CHANNEL_PREFIX}' .. string.sub(key, prefix), event)
end
return #KEYS
"""


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_payload(event: OrderEvent) -> dict[str, Any]:
    """The one event shape used on sockets, in history and on pub/sub (DESIGN §3)."""
    return {
        "orderId": str(event.order_id),
        "seq": event.seq,
        "status": event.status,
        "at": format_timestamp(event.at or datetime.now(UTC)),
        "attempt": event.attempt,
        "data": event.data,
    }


def is_terminal(payload: dict[str, Any]) -> bool:
    return OrderStatus(payload["status"]).is_terminal


class Publisher(Protocol):
    def publish(self, payload: dict[str, Any]) -> bool: ...

    def publish_many(self, payloads: list[dict[str, Any]]) -> bool: ...


class EventPublisher:
    def __init__(self, client: redis.Redis, terminal_ttl_s: int) -> None:
        self.client = client
        self.terminal_ttl_s = terminal_ttl_s
        self._script = client.register_script(_PUBLISH_SCRIPT)

    def publish(self, payload: dict[str, Any]) -> bool:
        """Publish one committed event; False (logged) if Redis is unreachable.

        Never raises: the event is already durable in PostgreSQL, and subscribers replay from
        there, so a Redis outage must not fail the order.
        """
        return self.publish_many([payload])

    def publish_many(self, payloads: list[dict[str, Any]]) -> bool:
        """Publish committed events in seq order, in one script call; False (logged) if Redis
        is unreachable. Never raises, for the reason `publish` gives."""
        keys: list[str] = []
        args: list[str | int] = []
        for payload in payloads:
            keys.append(f"{SNAPSHOT_PREFIX}{payload['orderId']}")
            ttl = self.terminal_ttl_s if is_terminal(payload) else ACTIVE_SNAPSHOT_TTL_S
            args += [json.dumps(payload, separators=(",", ":")), ttl]
        try:
            self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            first = payloads[0]
            log.warning("could not publish %s seq %s: %s", first["orderId"], first["seq"], exc)
            return False
        return True


def app_publisher() -> EventPublisher:
    """The current app's publisher, one per process and Redis URL (registering its script
    hashes it: per request, that was 1 % of the API's CPU)."""
    from flask import current_app

    from order_engine.process import PROCESS
    from order_engine.redis_client import get_redis

    settings = current_app.config["SETTINGS"]
    return PROCESS.get(
        "publisher",
        settings.redis_url,
        lambda: EventPublisher(get_redis(), settings.active_order_ttl_s),
    )
