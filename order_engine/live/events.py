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

# The live record of an order: `{"accountId": "<owner or empty>", "seq": <latest>, "events":
# [<event JSON>, ...]}`, the events in the order they were appended.
#
# One call publishes any number of committed events (in seq order). For each i: KEYS[i] the
# order's record key; ARGV[3i-2] the event JSON (which starts with its orderId and seq),
# ARGV[3i-1] the record's TTL in seconds, ARGV[3i] the order's account if the caller knows it
# (the intake does; '' otherwise). Per call: one PUBLISH of every event, a line each; per
# order in the call: one GET and at most one SET … EX (one commit's routing and building events
# write the record once; a script runs atomically, so nobody reads it between them). An order's
# first event (seq 1, intake's `pending`) starts its record with SET … NX and no GET: only if
# the worker's later events got there first (the task can run before intake publishes) is the
# record read and the event merged as any other.
# An event at or below the record's seq is published but not recorded. One past it is
# appended. A record that is missing, or in a former shape, starts afresh from the event, so
# it may begin after seq 1 or have a gap: its readers check (`recorded_events`).
# A finished order keeps its whole history for ACTIVE_ORDER_TTL_S (a terminal event shortens
# the TTL): a socket opened just after the end (a slow client, a reconnect) still replays from
# Redis. About 2 KB an order; that TTL bounds the memory.
_PUBLISH_SCRIPT = f"""
local HEAD = '^({{"accountId":"([^"]*)","seq":(%d+),"events":%[)'
local function load(record, key)
  local current = redis.pcall('GET', key)
  if type(current) == 'string' then
    local head, known, last = string.match(current, HEAD)
    if head ~= nil then
      if known ~= '' then record.owner = known end
      record.seq, record.events = tonumber(last), string.sub(current, #head + 1, -3)
    end
  end
end
local function add(record, event, seq, ttl)
  if seq > record.seq then
    if record.events == nil then
      record.events = event
    else
      record.events = record.events .. ',' .. event
    end
    record.seq, record.ttl, record.dirty = seq, ttl, true
  end
end
local records, written, published = {{}}, {{}}, {{}}
for i, key in ipairs(KEYS) do
  local event, ttl, owner = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local seq = tonumber(string.match(event, '^{{"orderId":"[^"]*","seq":(%d+)'))
  local record = records[key]
  if record == nil then
    record = {{owner = owner, seq = 0, ttl = ttl, dirty = false, fresh = seq == 1, added = {{}}}}
    if not record.fresh then load(record, key) end
    records[key] = record
    table.insert(written, key)
  end
  if record.owner == '' then record.owner = owner end
  add(record, event, seq, ttl)
  if record.fresh then table.insert(record.added, {{event, seq, ttl}}) end
  published[i] = event
end
redis.call('PUBLISH', '{EVENTS_CHANNEL}', table.concat(published, '\\n'))
local function value(r)
  return '{{"accountId":"' .. r.owner .. '","seq":' .. r.seq .. ',"events":[' .. r.events .. ']}}'
end
for _, key in ipairs(written) do
  local r = records[key]
  if r.fresh and not redis.call('SET', key, value(r), 'EX', r.ttl, 'NX') then
    r.seq, r.events, r.dirty = 0, nil, false
    load(r, key)
    for _, a in ipairs(r.added) do add(r, a[1], a[2], a[3]) end
    r.fresh = false
  end
  if r.dirty and not r.fresh then
    redis.call('SET', key, value(r), 'EX', r.ttl)
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
        try:
            record = json.loads(raw)
            owner, events = record["accountId"], record["events"]
            seqs = [event["seq"] for event in events]
        except (ValueError, KeyError, TypeError):
            return None
        if not owner or (account_id is not None and owner != str(account_id)):
            return None
        if seqs != list(range(1, len(seqs) + 1)):
            return None
        return list(events)


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
