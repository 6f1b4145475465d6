"""The per-account WebSocket cap on real Redis: slots taken and given back together."""

from __future__ import annotations

import threading
import time
import uuid
from functools import partial

import pytest

from order_engine.live.limits import SOCKETS_PREFIX, SocketSlots
from tests.support.batches import HoldFirst

pytestmark = pytest.mark.integration


def take_together(slots: SocketSlots, first: uuid.UUID, then: list[uuid.UUID]) -> list:
    """Take a slot for `first`, holding its round trip until every one of `then` has queued
    behind it; what each take returned, `first`'s first."""
    slots._take = held = HoldFirst(slots._take)
    results: list = [None] * (1 + len(then))

    def take(n: int, account: uuid.UUID) -> None:
        results[n] = slots.take(account)

    held.run_together(
        slots._batches, [partial(take, n, account) for n, account in enumerate([first, *then])]
    )
    assert len(held.calls) == 2  # the first alone, then all the others in one script call
    return results


def test_sockets_opening_together_share_one_call_and_the_cap_counts_each(redis_client):
    slots = SocketSlots(redis_client, cap=3)
    busy, other = uuid.uuid4(), uuid.uuid4()
    results = take_together(slots, other, [busy] * 5 + [other])
    assert results[0] is not None
    assert results[-1] is not None
    assert sum(slot is not None for slot in results[1:6]) == 3
    assert redis_client.zcard(f"{SOCKETS_PREFIX}{busy}") == 3
    assert redis_client.zcard(f"{SOCKETS_PREFIX}{other}") == 2


def test_sockets_opening_together_each_meet_their_own_accounts_cap(redis_client):
    slots = SocketSlots(redis_client, cap=3)
    wide, narrow = uuid.uuid4(), uuid.uuid4()
    slots._take = held = HoldFirst(slots._take)
    results: list = [None] * 8
    caps = [None] + [10] * 4 + [1] * 3  # the first and the wide account's, then the narrow's

    def take(n: int, account: uuid.UUID) -> None:
        results[n] = slots.take(account, caps[n])

    accounts = [wide] * 5 + [narrow] * 3
    held.run_together(slots._batches, [partial(take, n, a) for n, a in enumerate(accounts)])
    assert len(held.calls) == 2
    assert all(slot is not None for slot in results[:5])  # 5 under its own cap of 10
    assert sum(slot is not None for slot in results[5:]) == 1
    assert redis_client.zcard(f"{SOCKETS_PREFIX}{wide}") == 5
    assert slots.take(wide) is None  # the default cap (3) for a socket given none


def test_released_slots_are_free_again_and_an_expired_lease_frees_its_slot(redis_client):
    slots = SocketSlots(redis_client, cap=2)
    account = uuid.uuid4()
    first, second = slots.take(account), slots.take(account)
    assert first is not None
    assert second is not None
    assert slots.take(account) is None
    closers = [threading.Thread(target=slot.release) for slot in (first, second)]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(5)
    assert redis_client.zcard(f"{SOCKETS_PREFIX}{account}") == 0
    # A socket of a killed process never releases; its lease (the score) runs out instead.
    assert slots.take(account) is not None
    redis_client.zadd(f"{SOCKETS_PREFIX}{account}", {"killed": time.time() - 1})
    assert slots.take(account) is not None
    assert slots.take(account) is None


def test_one_accounts_sockets_opening_together_are_counted_and_added_once(redis_client):
    slots = SocketSlots(redis_client, cap=100)
    account = uuid.uuid4()
    key = f"{SOCKETS_PREFIX}{account}"
    with redis_client.monitor() as monitor:
        results = take_together(slots, account, [account] * 9)
        ran: list[str] = []
        for command in monitor.listen():  # the scripts' own commands, in order
            words = command["command"].split()
            if len(words) > 1 and words[1] == key:
                ran.append(words[0])
            if words[0] == "EXPIRE" and ran.count("EXPIRE") == 2:
                break  # the second call's last command
    assert all(slot is not None for slot in results)
    assert redis_client.zcard(key) == 10
    # Each call: one sweep, one count, one add, one expiry, whatever its number of sockets.
    assert ran == ["ZREMRANGEBYSCORE", "ZCARD", "ZADD", "EXPIRE"] * 2

    with redis_client.monitor() as monitor:
        closers = [threading.Thread(target=slot.release) for slot in results]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(5)
        removed = 0
        for command in monitor.listen():
            words = command["command"].split()
            if words[0] == "ZREM" and words[1] == key:
                removed += len(words) - 2
                if removed == 10:
                    break
    assert redis_client.zcard(key) == 0
