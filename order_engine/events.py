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

# KEYS[1] snapshot hash, ARGV: seq, snapshot json, ttl seconds, channel, event json
_PUBLISH_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'snapshot', ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return redis.call('PUBLISH', ARGV[4], ARGV[5])
"""


def channel_for(order_id: str) -> str:
    return f"{CHANNEL_PREFIX}{order_id}"


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
        """Publish committed events in seq order, in one round trip; False (logged) if Redis is
        unreachable. Never raises, for the reason `publish` gives."""
        if len(payloads) == 1:
            return self._send(payloads, self.client)
        return self._send(payloads, self.client.pipeline(transaction=False))

    def _send(self, payloads: list[dict[str, Any]], client: Any) -> bool:
        try:
            for payload in payloads:
                order_id = payload["orderId"]
                ttl = self.terminal_ttl_s if is_terminal(payload) else ACTIVE_SNAPSHOT_TTL_S
                body = json.dumps(payload, separators=(",", ":"))
                self._script(
                    keys=[f"{SNAPSHOT_PREFIX}{order_id}"],
                    args=[payload["seq"], body, ttl, channel_for(order_id), body],
                    client=client,
                )
            if client is not self.client:
                client.execute()
        except redis.RedisError as exc:
            first = payloads[0]
            log.warning("could not publish %s seq %s: %s", first["orderId"], first["seq"], exc)
            return False
        return True
