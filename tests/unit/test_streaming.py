"""An order's stream delivers every event once, in seq order, whatever pub/sub drops and even
when a history read fails: it never sends past a gap, and reads again shortly."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from sqlalchemy.exc import TimeoutError as PoolTimeout

from order_engine.live.streaming import OrderStream, Subscription

ORDER = "3f2c1a9e-0000-4000-8000-000000000001"


def event(seq: int, status: str = "routing") -> dict:
    return {"orderId": ORDER, "seq": seq, "status": status, "data": {}}


class History:
    """The database's view of the order; `fail` reads raise like an exhausted pool."""

    def __init__(self, events: list[dict], fail: int = 0) -> None:
        self.events, self.fail, self.reads = events, fail, 0

    def __call__(self, after: int) -> list[dict]:
        self.reads += 1
        if self.fail:
            self.fail -= 1
            raise PoolTimeout("QueuePool limit of size 20 overflow 0 reached")
        return [e for e in self.events if e["seq"] > after]


def drain(stream: OrderStream, deadline_s: float = 10.0) -> list[int]:
    sent: list[int] = []
    deadline = time.monotonic() + deadline_s
    while not stream.finished and time.monotonic() < deadline:
        sent += [e["seq"] for e in stream.next_batch()]
    return sent


def opened(subscription: Subscription, history: History) -> OrderStream:
    """A stream just opened on an order whose first event (seq 1) it has read."""
    return OrderStream(
        subscription,
        history,
        SimpleNamespace(generation=0),  # type: ignore[arg-type]
        tick_s=0.05,
        first_history=[event(1, "pending")],
    )


def test_a_gap_whose_history_read_fails_is_filled_once_the_database_answers():
    subscription = Subscription(ORDER, generation=0)
    history = History([event(1, "pending"), event(2), event(3, "confirmed")], fail=1)
    stream = opened(subscription, history)
    subscription.queue.put(event(3, "confirmed"))  # seq 2 was lost by pub/sub
    sent = drain(stream)
    assert sent == [1, 2, 3]
    assert history.reads == 2  # the failed read, then its retry


def test_sockets_opened_together_do_not_resync_together():
    streams = [
        OrderStream(
            Subscription(ORDER, 0),
            History([]),
            SimpleNamespace(generation=0),  # type: ignore[arg-type]
            resync_after_s=20.0,
        )
        for _ in range(200)
    ]
    due = sorted(s._resync_at for s in streams)
    assert due[-1] - due[0] > 10.0  # spread over the ½–1½ × 20 s window


def test_a_waiting_socket_is_woken_at_once_to_re_read_after_its_hub_reconnected():
    subscription = Subscription(ORDER, generation=0)
    hub = SimpleNamespace(generation=0)
    history = History([event(1, "pending"), event(2)])
    stream = OrderStream(
        subscription,
        history,
        hub,  # type: ignore[arg-type]
        tick_s=30.0,
        first_history=[event(1, "pending")],
    )
    assert [e["seq"] for e in stream.next_batch()] == [1]
    hub.generation = 1  # the hub's subscription came back; seq 2 was published meanwhile
    threading.Timer(0.2, subscription.wake).start()
    started = time.monotonic()
    assert [e["seq"] for e in stream.next_batch()] == [2]
    assert time.monotonic() - started < 5.0  # woken, not at the end of its 30 s wait
    assert history.reads == 1


def test_a_quiet_socket_re_reads_on_time_however_long_its_wait():
    history = History([event(1, "pending"), event(2)])
    stream = OrderStream(
        Subscription(ORDER, 0),
        history,
        SimpleNamespace(generation=0),  # type: ignore[arg-type]
        resync_after_s=0.2,
        tick_s=30.0,
        first_history=[event(1, "pending")],
    )
    assert [e["seq"] for e in stream.next_batch()] == [1]
    started = time.monotonic()
    assert [e["seq"] for e in stream.next_batch()] == [2]  # pub/sub lost it; the re-read has it
    assert time.monotonic() - started < 5.0


def test_events_queued_together_go_out_in_one_batch_and_a_wake_up_is_kept():
    subscription = Subscription(ORDER, generation=0)
    history = History([])
    stream = opened(subscription, history)
    assert [e["seq"] for e in stream.next_batch()] == [1]
    for payload in (event(3, "building"), event(2), event(1, "pending"), event(2)):
        subscription.queue.put(payload)  # out of order, with duplicates
    subscription.wake()
    subscription.queue.put(event(4, "submitted"))
    assert [e["seq"] for e in stream.next_batch()] == [2, 3]
    assert [e["seq"] for e in stream.next_batch()] == [4]
    # The wake-up is still queued, not lost: the next wait ends at once on it.
    assert subscription.queue.qsize() == 1
    assert subscription.get(5) is None
    assert history.reads == 0
