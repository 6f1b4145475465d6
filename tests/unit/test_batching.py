"""Group commit: calls that arrive while a batch of their kind is in flight go in the next one."""

import threading

import pytest

from order_engine.infra.batching import GroupCommit
from tests.support.watchers import wait_until


class Recorder:
    """A batch runner that records its batches and, while `hold` is clear, blocks the first."""

    def __init__(self) -> None:
        self.batches: list[tuple[object, list[int]]] = []
        self.hold = threading.Event()
        self.holding = threading.Event()

    def __call__(self, kind, items):
        if not self.holding.is_set():
            self.holding.set()
            self.hold.wait(10)
        self.batches.append((kind, list(items)))
        return [ValueError(f"no {item}") if item < 0 else item * 10 for item in items]


def submit_all(group, kind, items, results):
    threads = []
    for item in items:

        def run(item=item):
            try:
                results[item] = group.submit(kind, item)
            except ValueError as exc:
                results[item] = str(exc)

        threads.append(threading.Thread(target=run))
        threads[-1].start()
    return threads


def test_calls_made_while_a_batch_is_in_flight_go_together_in_the_next():
    runner = Recorder()
    group = GroupCommit("test", runner)
    results: dict[int, object] = {}
    first = submit_all(group, "k", [1], results)
    assert runner.holding.wait(5)
    rest = submit_all(group, "k", [2, 3, 4, -5], results)
    wait_until(lambda: group.queued() == 4, timeout_s=5, what="the calls to queue")
    runner.hold.set()
    for thread in first + rest:
        thread.join(5)
    assert runner.batches[0] == ("k", [1])
    assert sorted(runner.batches[1][1]) == [-5, 2, 3, 4]
    assert len(runner.batches) == 2
    # Each caller gets its own outcome, an exception for that caller alone.
    assert results == {1: 10, 2: 20, 3: 30, 4: 40, -5: "no -5"}


def test_kinds_are_batched_apart_and_a_batch_is_capped():
    runner = Recorder()
    group = GroupCommit("test", runner, max_batch=2)
    results: dict[int, object] = {}
    first = submit_all(group, "a", [1], results)
    assert runner.holding.wait(5)
    others = submit_all(group, "b", [7, 8], results)  # another kind is not held up by "a"
    for thread in others:
        thread.join(5)
    assert sorted(results) == [7, 8]
    rest = submit_all(group, "a", [2, 3, 4], results)
    wait_until(lambda: group.queued() == 3, timeout_s=5, what="the calls to queue")
    runner.hold.set()
    for thread in first + rest:
        thread.join(5)
    sizes = [len(items) for kind, items in runner.batches if kind == "a"]
    assert sizes[0] == 1
    assert sorted(sizes[1:]) == [1, 2]
    assert results == {1: 10, 2: 20, 3: 30, 4: 40, 7: 70, 8: 80}


def test_an_exception_of_the_runner_reaches_every_caller_of_its_batch_and_no_other():
    calls = []

    def runner(_kind, items):
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("the server went away")
        return list(items)

    group = GroupCommit("test", runner)
    with pytest.raises(ConnectionError):
        group.submit("k", 1)
    assert group.submit("k", 2) == 2  # the flusher carries on


def test_a_runner_that_answers_the_wrong_number_of_outcomes_fails_its_callers():
    group = GroupCommit("test", lambda _kind, items: [])
    with pytest.raises(RuntimeError, match="0 outcomes for a batch of 1"):
        group.submit("k", 1)
