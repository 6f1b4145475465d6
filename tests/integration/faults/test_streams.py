"""Live status streams under races and faults (docs/reliability.md, fault scenarios #19–#21).

The contract (docs/design.md): a client that connects at any time gets every event of its order
exactly once, in seq order, ending with the terminal one; a client that resumes with
`?afterSeq=N` gets exactly the events after N. The invariant checker compares what each
watcher saw with the order's history in PostgreSQL.
"""

from __future__ import annotations

import random
import signal

import pytest

from tests.support.invariants import check_invariants
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.timeout(150)
def test_clients_connecting_at_random_moments_during_a_burst_see_whole_streams(make_stack):
    stack = make_stack(api_workers=2, DEX_SWAP_LATENCY_MS="300-700")
    rng = random.Random(19)
    order_ids: list[str] = []
    for n in range(30):
        order_ids.append(stack.submit(amount=f"0.{n + 10}"))
        for _ in range(2):  # before, during and after each order's events are published
            stack.watch(rng.choice(order_ids), delay_s=rng.uniform(0, 1.5), resume=False)

    report = check_invariants(stack, terminal_within_s=90)
    assert report.by_status == {"confirmed": 30}
    assert report.watchers == 60
    assert all(w.connections == 1 and w.close_codes == [1000] for w in stack.watchers)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_pubsub_connections_killed_mid_stream_still_deliver_every_terminal_event(make_stack):
    stack = make_stack(DEX_SWAP_LATENCY_MS="2500")
    order_ids = [stack.submit(amount=f"0.{n + 11}") for n in range(5)]
    watchers = [stack.watch(order_id, resume=False) for order_id in order_ids for _ in range(2)]
    wait_until(
        lambda: all(w.events and w.events[-1]["status"] == "submitted" for w in watchers),
        30,
        "every watcher to be waiting on a submitted order",
    )

    with stack.redis_server.client() as client:
        killed = client.client_kill_filter(_type="pubsub")
    assert killed >= 1

    check_invariants(stack)
    assert all(w.connections == 1 and w.close_codes == [1000] for w in watchers)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_client_that_reconnects_after_seq_receives_exactly_the_rest(make_stack):
    stack = make_stack(DEX_SWAP_LATENCY_MS="2000")
    order_id = stack.submit()
    watcher = stack.watch(order_id)
    wait_until(lambda: watcher.last_seq >= 2, 10, "the client to see routing")

    watcher.drop()  # hang up mid-stream; the watcher reconnects with ?afterSeq=<last seen>

    check_invariants(stack)
    assert watcher.connections == 2
    assert watcher.seqs == [1, 2, 3, 4, 5]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_api_restart_mid_stream_clients_resume_after_seq_and_finish(make_stack):
    # Landing 6 s after the send: the blockhash must outlive that (30 slots, 12 s) and the
    # confirmation wait too (with TASK_TIME_LIMIT_S > CONFIRM_TIMEOUT_S + 4 × RPC_TIMEOUT_S).
    stack = make_stack(
        DEX_SWAP_LATENCY_MS="6000",
        DEX_BLOCKHASH_VALIDITY_SLOTS="30",
        CONFIRM_TIMEOUT_S="8",
        TASK_TIME_LIMIT_S="13",
        ORDER_LEASE_S="14",
    )
    order_ids = [stack.submit(amount=f"0.{n + 11}") for n in range(4)]
    watchers = [stack.watch(order_id) for order_id in order_ids for _ in range(2)]
    wait_until(
        lambda: all(w.events and w.events[-1]["status"] == "submitted" for w in watchers),
        30,
        "every watcher to be waiting on a submitted order",
    )

    stack.kill("api", signal.SIGTERM)  # graceful stop; open sockets are cut after 2 s
    assert stack.processes["api"].wait(20) == 0
    stack.start_api()

    check_invariants(stack)
    assert all(w.connections >= 2 for w in watchers), [w.connections for w in watchers]
