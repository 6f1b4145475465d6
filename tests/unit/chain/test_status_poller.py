"""The status poller asks for a bundle's in-flight status one slot after its send, then at
doubling distances: a failed bundle is heard of within twice its age, and a burst in flight is
not asked about every slot."""

from __future__ import annotations

from types import SimpleNamespace

from order_engine.chain import status_poller
from order_engine.chain.status_poller import StatusPoller, _Waiter

SLOT_S = 0.4


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_bundle_is_asked_about_one_slot_after_its_send_then_at_doubling_distances(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(status_poller.time, "monotonic", clock)
    waiter = _Waiter(bundle=True, slot_s=1.0)  # whole seconds: exact arithmetic
    asked = []
    for tick in range(1, 40):  # one look per slot, as the poller's loop takes them
        clock.now = 1_000.0 + tick
        if waiter.bundle_due(clock.now):
            asked.append(tick)
    assert asked == [1, 3, 7, 15, 31]  # 5 looks in 39 slots, each within twice its age
    assert not _Waiter(bundle=False, slot_s=SLOT_S).bundle_due(clock.now + 60)


def test_only_the_bundles_due_are_asked_about_in_a_round(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(status_poller.time, "monotonic", clock)
    poller = StatusPoller(SimpleNamespace(slot_ms=400))  # type: ignore[arg-type]
    old, new, public = _Waiter(True, SLOT_S), _Waiter(True, SLOT_S), _Waiter(False, SLOT_S)
    clock.now += SLOT_S + 1e-9
    assert old.bundle_due(clock.now)  # asked once already: next in two slots
    new.due = clock.now  # sent a slot ago
    poller._waiters = {"old": [old], "new": [new], "public": [public]}
    assert poller._bundles_due() == {"new"}
    clock.now += 2 * SLOT_S + 1e-9
    assert poller._bundles_due() == {"old", "new"}
