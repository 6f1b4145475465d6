"""Lifecycle events: their wire shape, and their publication to Redis.

After each transition commits, its event is published on the `order-events` channel and
appended to the order's live record under `active_order:<id>`, in one atomic script that
refuses to move the record backwards (a stale worker's late publish cannot overwrite a newer
state). The events of one script call (the transitions of many orders that committed together)
go out as one message, one event's JSON a line: one PUBLISH a batch instead of one an event, and
every API process reads the one channel anyway (`streaming.EventHub`). While the order
and for ACTIVE_ORDER_TTL_S after it ends, that record holds every event so far, so a socket
opening on it replays from Redis. Pub/sub is at-most-once, so subscribers still re-read
PostgreSQL by `seq` when anything is missing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import redis

from order_engine.domain.status import OrderStatus
from order_engine.domain.time import format_timestamp
from order_engine.infra.batching import GroupCommit
from order_engine.models import OrderEvent

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "order-events"
SNAPSHOT_PREFIX = "active_order:"
ACTIVE_SNAPSHOT_TTL_S = 7 * 24 * 3600

# The live record of an order, a string: its owner's account id (empty until known) on the
# first line, then each event's JSON on a line of its own, in the order they were published.
# Appending needs no read: a record may hold an event twice (a re-publication) or out of seq
# order (a stale worker's late publish), and its readers order the events by seq and drop
# repeats (`recorded_events`), so a late publish never moves what a reader sees backwards.
#
# One call publishes any number of committed events (in seq order). For each i: KEYS[i] the
# order's record key; ARGV[3i-2] the event JSON (which starts with its orderId and seq),
# ARGV[3i-1] the record's TTL in seconds, ARGV[3i] the order's account if the caller knows it
# (the intake does; '' otherwise). Per call: one PUBLISH of every event, a line each. Per order
# in the call, one write of all its events: an order's first event (seq 1, intake's `pending`)
# starts its record with SET … NX EX; any later ones go in one APPEND, with an EXPIRE only when
# that APPEND created the record or ends the order (a terminal event shortens the TTL). Only
# when a worker's events got there before intake's `pending` (the task can run before intake
# publishes) does the NX fail; then the record is read once to name its owner and merge.
# A finished order keeps its whole history for ACTIVE_ORDER_TTL_S: a socket opened just after
# the end (a slow client, a reconnect) still replays from Redis. About 2 KB an order; that TTL
# bounds the memory. A record in a shape of an earlier version is started afresh where it is
# read (the NX path) or, where it is only appended to, never read back whole (the database
# answers then).
_PUBLISH_SCRIPT = f"""
local records, order, published = {{}}, {{}}, {{}}
for i, key in ipairs(KEYS) do
  local event, ttl, owner = ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), ARGV[3 * i]
  local record = records[key]
  if record == nil then
    local first = string.match(event, '^{{"orderId":"[^"]*","seq":1,') ~= nil
    record = {{owner = owner, ttl = ttl, fresh = first, lines = {{}}}}
    records[key] = record
    table.insert(order, key)
  end
  if record.owner == '' then record.owner = owner end
  record.ttl = ttl
  table.insert(record.lines, event)
  published[i] = event
end
redis.call('PUBLISH', '{EVENTS_CHANNEL}', table.concat(published, '\\n'))
for _, key in ipairs(order) do
  local r = records[key]
  local lines = table.concat(r.lines, '\\n')
  local terminal = r.ttl < {ACTIVE_SNAPSHOT_TTL_S}
  if r.fresh then
    if not redis.call('SET', key, r.owner .. '\\n' .. lines, 'EX', r.ttl, 'NX') then
      local current = redis.pcall('GET', key)
      local head, rest = nil, nil
      if type(current) == 'string' then
        head, rest = string.match(current, '^([^\\n{{]*)(\\n.*)$')
      end
      if head == nil then
        redis.call('SET', key, r.owner .. '\\n' .. lines, 'EX', r.ttl)
      else
        if head == '' then head = r.owner end
        redis.call('SET', key, head .. rest .. '\\n' .. lines, 'KEEPTTL')
        if terminal then redis.call('EXPIRE', key, r.ttl) end
      end
    end
  else
    local added = '\\n' .. lines
    local length = redis.pcall('APPEND', key, added)
    if type(length) ~= 'number' then
      redis.call('SET', key, r.owner .. added, 'EX', r.ttl)
    elseif length == #added or terminal then
      redis.call('EXPIRE', key, r.ttl)
    end
  end
end
return #KEYS
"""


# Every event's JSON starts with its order's id (`event_payload`, serialised compactly).
_ORDER_ID_AT = len('{"orderId":"')


def published_events(message: str) -> Iterator[tuple[str, str]]:
    """(order id, event JSON) of each event in a message of the events channel."""
    for line in message.split("\n"):
        yield line[_ORDER_ID_AT : line.find('"', _ORDER_ID_AT)], line


def event_payload(event: OrderEvent) -> dict[str, Any]:
    """The one event shape used on sockets, in history and on pub/sub (docs/design.md)."""
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
        # Publications that meet in flight (other orders' events, committed meanwhile) go in
        # one script call: the script takes any number of orders' events.
        self._batches: GroupCommit[tuple[list[str], list[str | int]], bool] = GroupCommit(
            "events", self._run_publications
        )
        # Sockets opening together (a burst of orders, each followed) read their records in
        # one MGET.
        self._reads: GroupCommit[str, Any] = GroupCommit("history", self._run_reads)

    def publish(self, payload: dict[str, Any], account_id: uuid.UUID | None = None) -> bool:
        """Publish one committed event; False (logged) if Redis is unreachable. `account_id`,
        the order's owner, is recorded with it (the intake passes it with the first event).

        Never raises: the event is already durable in PostgreSQL, and subscribers replay from
        there, so a Redis outage must not fail the order.
        """
        return self.publish_many([payload], account_id)

    def publish_many(
        self, payloads: list[dict[str, Any]], account_id: uuid.UUID | None = None
    ) -> bool:
        """Publish committed events in seq order, in one script call; False (logged) if Redis
        is unreachable. Never raises, for the reason `publish` gives."""
        keys: list[str] = []
        args: list[str | int] = []
        owner = "" if account_id is None else str(account_id)
        for payload in payloads:
            keys.append(f"{SNAPSHOT_PREFIX}{payload['orderId']}")
            terminal = is_terminal(payload)
            ttl = self.terminal_ttl_s if terminal else ACTIVE_SNAPSHOT_TTL_S
            args += [json.dumps(payload, separators=(",", ":")), ttl, owner]
        try:
            self._batches.submit(None, (keys, args))
        except redis.RedisError as exc:
            first = payloads[0]
            log.warning("could not publish %s seq %s: %s", first["orderId"], first["seq"], exc)
            return False
        return True

    def _run_publications(
        self, _kind: object, calls: Sequence[tuple[list[str], list[str | int]]]
    ) -> list[bool]:
        """One script call for every order's events in `calls` (each call's in seq order)."""
        self._script(
            keys=[key for keys, _ in calls for key in keys],
            args=[arg for _, args in calls for arg in args],
        )
        return [True] * len(calls)

    def _run_reads(self, _kind: object, keys: Sequence[str]) -> list[Any]:
        return list(self.client.mget(keys))

    def recorded_events(
        self, order_id: uuid.UUID, account_id: uuid.UUID | None
    ) -> list[dict[str, Any]] | None:
        """Every event of the order so far, from its live record, if that record is whole:
        it names its owner, who is `account_id` (None: any account), and holds seq 1 to its
        latest without a gap. None otherwise (no record, an expired one, an unreachable Redis):
        PostgreSQL has the answer then."""
        try:
            raw = self._reads.submit(None, f"{SNAPSHOT_PREFIX}{order_id}")
        except redis.RedisError as exc:
            log.info("live record of %s unreadable (%s); reading the database", order_id, exc)
            return None
        if not isinstance(raw, str | bytes):
            return None
        return whole_record(raw.decode() if isinstance(raw, bytes) else raw, account_id)


def whole_record(raw: str, account_id: uuid.UUID | None) -> list[dict[str, Any]] | None:
    """The events of a live record in seq order, each once, if the record names its owner, who
    is `account_id` (None: any account), and holds seq 1 to its latest without a gap."""
    owner, _, lines = raw.partition("\n")
    if not owner or (account_id is not None and owner != str(account_id)):
        return None
    events: dict[int, dict[str, Any]] = {}
    try:
        for line in lines.split("\n"):
            event = json.loads(line)
            events.setdefault(event["seq"], event)
    except (ValueError, KeyError, TypeError):
        return None
    if sorted(events) != list(range(1, len(events) + 1)):
        return None
    return [events[seq] for seq in range(1, len(events) + 1)]


def app_publisher() -> EventPublisher:
    """The current app's publisher, one per process and Redis URL (registering its script
    hashes it: per request, that was 1 % of the API's CPU)."""
    from flask import current_app

    from order_engine.infra.process import PROCESS
    from order_engine.infra.redis_client import get_redis

    settings = current_app.config["SETTINGS"]
    return PROCESS.get(
        "publisher",
        settings.redis_url,
        lambda: EventPublisher(get_redis(), settings.active_order_ttl_s),
    )
