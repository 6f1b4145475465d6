"""The never-two-swaps protocol, in process: the real execution service and repository on
PostgreSQL, an in-process localnet on virtual time, and a chain client whose sends can fail the
ways a network fails (refused, or accepted with the answer lost)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY
from solders.keypair import Keypair
from sqlalchemy import text
from sqlalchemy.orm import Session

from order_engine.chain.block_engine import TRANSACTIONS_PATH
from order_engine.chain.pools import PoolIndex
from order_engine.config import Settings
from order_engine.config.parsers import LatencyRange
from order_engine.domain.errors import RpcUnavailable
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.routing import Router
from order_engine.services.execution import ExecutionService, Outcome, RetryLater
from order_engine.services.task_copy import task_copy
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain
from tests.support.factories import add_order
from tests.support.statements import statements_sent

pytestmark = pytest.mark.integration


class FlakyChain(InProcessChain):
    """Sends fail as planned, to the node or to the block engine (the default, protected
    path): `refuse` never reaches it, `lose` reaches it but the answer is lost. Every send's
    bytes are kept."""

    def __init__(self, node: Localnet, clock: VirtualClock) -> None:
        super().__init__(node, clock)
        self.plan: list[str] = []
        self.sent: list[str] = []
        self.drop_first = False  # every send of the first bytes sent never reaches anyone

    def send_transaction(self, encoded: str) -> str:
        send = lambda: super(FlakyChain, self).send_transaction(encoded)  # noqa: E731
        return self._flaky(encoded, send, "dropped")

    def post_at(self, url: str, request: Any, what: str) -> Any:
        if url.endswith(TRANSACTIONS_PATH) and isinstance(request, dict):
            encoded = request["params"][0]
            send = lambda: super(FlakyChain, self).post_at(url, request, what)  # noqa: E731
            return self._flaky(encoded, send, {"jsonrpc": "2.0", "id": 1, "result": "dropped"})
        return super().post_at(url, request, what)

    def _flaky(self, encoded: str, send: Callable[[], Any], dropped: Any) -> Any:
        self.sent.append(encoded)
        if self.drop_first and encoded == self.sent[0]:
            return dropped
        fault = self.plan.pop(0) if self.plan else None
        if fault == "refuse":
            raise RpcUnavailable("connection refused")
        answer = send()
        if fault == "lose":
            raise RpcUnavailable("read timed out")
        return answer


class _NullPublisher:
    def publish(self, payload: dict) -> bool:
        return True

    def publish_many(self, payloads: list[dict]) -> bool:
        return True


@pytest.fixture
def rig(request, engine, test_settings, clean_tables):
    clock = VirtualClock(REPLAY_START_MS)
    # 25 slots of blockhash validity (10 s): shorter than the broker's hold, as on mainnet.
    # A test may set the node's other settings (`indirect` parametrization).
    node_settings = {"expiry_rate": Decimal(0), **getattr(request, "param", {})}
    node = Localnet.in_memory(
        LocalnetSettings(seed=7, blockhash_validity_slots=25, **node_settings), clock
    )
    chain = FlakyChain(node, clock)
    pools = PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)
    router = Router(pools, now_s=lambda: clock.now_ms() // 1000, clock_ms=clock.now_ms)
    wallet = Keypair.from_seed(hashlib.sha256(b"recovery-tests").digest())
    settings = Settings.from_env({**test_settings, "CONFIRM_TIMEOUT_S": "5"})
    with Session(engine, expire_on_commit=False) as session:
        service = ExecutionService(
            session,
            router,
            chain,
            wallet,
            _NullPublisher(),
            settings,
            now=lambda: datetime.fromtimestamp(clock.now_ms() / 1000, UTC),
        )
        yield service, chain, node, clock, session


def new_order(session: Session, memo: str, **landing: Any) -> uuid.UUID:
    with session.begin():
        order = add_order(
            session,
            first_event={},
            amount_in=Decimal("2"),
            slippage_bps=100,
            client_order_id=memo,
            **landing,
        )
    return order.id


def run_until_done(service, clock, order_id) -> list[str]:
    outcomes = []
    for _ in range(6):
        try:
            outcome = service.execute(order_id, f"test:{uuid.uuid4().hex[:6]}")
        except RetryLater as later:
            outcomes.append(f"retry:{later.error.code}")
            clock.advance_ms(int(later.countdown_s * 1000) + 1)
            continue
        outcomes.append(str(outcome))
        if outcome in {Outcome.CONFIRMED, Outcome.FAILED}:
            break
    return outcomes


def ledger(node: Localnet, memo: str) -> list[dict]:
    reply = node.handle(
        {"jsonrpc": "2.0", "id": 1, "method": "localnet_ledger", "params": [{"memo": memo}]}
    )
    return reply["result"]


def order_row(session: Session, order_id: uuid.UUID):
    with session.begin():
        return session.execute(
            text("SELECT status, attempts, tx_hash, landing FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()


def test_a_refused_send_is_retried_with_the_same_signed_bytes(rig):
    service, chain, node, clock, session = rig
    order_id = new_order(session, "refused")
    chain.plan = ["refuse"]
    assert run_until_done(service, clock, order_id) == ["retry:RPC_UNAVAILABLE", "confirmed"]
    # The refused bytes sent again, and again while they wait to land (the rebroadcast
    # interval is shorter than the localnet's 2-3 s landing): never a second transaction.
    assert len(chain.sent) >= 2
    assert len(set(chain.sent)) == 1
    (entry,) = ledger(node, "refused")
    assert entry["status"] == "landed"
    assert order_row(session, order_id).tx_hash == entry["signature"]


def test_a_swap_counts_as_in_flight_from_its_route_until_its_task_learns_how_it_ended(rig):
    service, chain, node, clock, session = rig
    in_flight, seen = service.router.in_flight, []
    flaky, build = chain._flaky, service.runner.builder.build

    def build_recording_what_is_in_flight(*args, **kwargs):
        seen.append(("build", len(in_flight)))
        return build(*args, **kwargs)

    def send_recording_what_is_in_flight(encoded, send, dropped):
        seen.append(("send", len(in_flight)))
        return flaky(encoded, send, dropped)

    service.runner.builder.build = build_recording_what_is_in_flight
    chain._flaky = send_recording_what_is_in_flight
    order_id = new_order(session, "in-flight")
    chain.plan = ["refuse"]
    assert run_until_done(service, clock, order_id) == ["retry:RPC_UNAVAILABLE", "confirmed"]
    # Counted from its route (before the build: an order routed meanwhile is quoted after it)
    # through every send, the re-broadcast's too; a refused send ends its task and a landing
    # settles it: nothing is left behind.
    assert seen[0] == ("build", 1)
    assert {count for _, count in seen} == {1}
    assert [step for step, _ in seen].count("send") >= 2
    assert len(in_flight) == 0


def test_a_lost_answer_is_settled_from_the_chain_and_lands_once(rig):
    service, chain, node, clock, session = rig
    order_id = new_order(session, "lost")
    chain.plan = ["lose"]
    outcomes = run_until_done(service, clock, order_id)
    assert outcomes[-1] == "confirmed"
    # Whatever the engine sent, it was the one transaction: one signature, landed once.
    assert len(set(chain.sent)) == 1
    (entry,) = ledger(node, "lost")
    assert order_row(session, order_id).tx_hash == entry["signature"]


def plan_faults(node: Localnet, memo: str, faults: list[str]) -> None:
    """The next transactions of `memo` to arrive at the node meet these faults, in order."""
    reply = node.handle(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "localnet_planFaults",
            "params": [{"memo": memo, "faults": faults}],
        }
    )
    assert "error" not in reply, reply


def plan_drops(node: Localnet, memo: str, count: int) -> None:
    """The next `count` transactions of `memo` to arrive at the node never reach a leader."""
    plan_faults(node, memo, ["drop"] * count)


def test_a_dropped_transaction_is_re_broadcast_and_lands_once(rig):
    service, chain, node, clock, session = rig
    order_id = new_order(session, "dropped")
    plan_drops(node, "dropped", 1)
    outcomes = run_until_done(service, clock, order_id)
    assert outcomes[-1] == "confirmed"
    # The same signed bytes again (no new transaction while the first may land), not a
    # minute's wait for its blockhash to expire.
    assert len(chain.sent) >= 2
    assert len(set(chain.sent)) == 1
    (entry,) = ledger(node, "dropped")
    row = order_row(session, order_id)
    assert (row.status, row.tx_hash) == ("confirmed", entry["signature"])


@pytest.mark.parametrize("rig", [{"swap_latency": LatencyRange(0, 0)}], indirect=True)
def test_where_swaps_land_within_a_slot_a_dropped_one_is_sent_again_within_a_few(rig):
    service, chain, node, clock, session = rig
    for _ in range(64):  # what this process has seen: every landing one slot after its send
        chain.landing_delays.landed(1)
    order_id = new_order(session, "dropped-fast")
    plan_drops(node, "dropped-fast", 1)
    outcomes = run_until_done(service, clock, order_id)
    assert outcomes[-1] == "confirmed"
    assert len(chain.sent) == 2
    assert len(set(chain.sent)) == 1
    landing = order_row(session, order_id).landing
    # Sent again 4 slots after the send (1.6 s), not after REBROADCAST_INTERVAL_S (3 s: 7.5).
    assert landing["landedSlot"] - landing["sentSlot"] <= 5


def test_a_transaction_dropped_until_it_expires_is_replaced_only_then(rig):
    service, chain, node, clock, session = rig
    order_id = new_order(session, "always-dropped")
    plan_drops(node, "always-dropped", 1000)
    outcomes = run_until_done(service, clock, order_id)
    assert outcomes[-1] == "failed"
    # One signature per attempt, each re-broadcast until it expired and never again after
    # the next one was signed: the sends of one never interleave with another's.
    runs = [chain.sent[0]]
    for encoded in chain.sent[1:]:
        if encoded != runs[-1]:
            runs.append(encoded)
    assert len(runs) == len(set(runs)) == 3  # ORDER_MAX_ATTEMPTS
    assert len(chain.sent) > len(runs)  # each was re-broadcast
    assert ledger(node, "always-dropped") == []


def test_a_crash_after_signing_resends_the_recorded_transaction_on_take_over(rig):
    service, chain, node, clock, session = rig
    order_id = new_order(session, "crashed")
    chain.plan = ["refuse"]
    # The first executor dies right after its send (its lease stays until it expires).
    failures = service.failures
    original = failures.fail_attempt
    failures.fail_attempt = lambda attempt, error: Outcome.LEASE_LOST  # type: ignore[method-assign]
    assert service.execute(order_id, "dead-executor") == Outcome.LEASE_LOST
    failures.fail_attempt = original  # type: ignore[method-assign]
    with session.begin():
        session.execute(
            text("UPDATE orders SET lease_until = now() - interval '1 second' WHERE id = :id"),
            {"id": order_id},
        )
    assert service.execute(order_id, "second-executor") == Outcome.CONFIRMED
    # The recorded bytes again (and re-broadcast while they wait to land): never a new swap.
    assert len(chain.sent) >= 2
    assert len(set(chain.sent)) == 1
    assert len(ledger(node, "crashed")) == 1


def test_a_cancel_that_arrives_while_routing_wins_and_nothing_is_sent(rig):
    from order_engine.services.order import OrderService

    service, chain, node, clock, session = rig
    order_id = new_order(session, "cancelled-while-routing")
    route = service.router.route

    def route_then_the_client_cancels(*args, **kwargs):
        decision = route(*args, **kwargs)
        with Session(session.get_bind(), expire_on_commit=False) as other:
            assert OrderService(other, _NullPublisher()).cancel(order_id).status == "cancelled"
        return decision

    service.router.route = route_then_the_client_cancels
    assert service.execute(order_id, "executor") == Outcome.LEASE_LOST
    assert chain.sent == []  # the executor stopped before building anything
    assert order_row(session, order_id).status == "cancelled"
    assert ledger(node, "cancelled-while-routing") == []


def test_no_cancel_once_a_transaction_was_built(rig):
    from order_engine.errors import ConflictError
    from order_engine.services.order import OrderService

    service, chain, node, clock, session = rig
    order_id = new_order(session, "built")
    chain.plan = ["refuse"]  # the attempt fails after building: the order waits to retry
    with pytest.raises(RetryLater):
        service.execute(order_id, "executor")
    assert order_row(session, order_id).status == "pending"
    with pytest.raises(ConflictError, match="may land"):
        OrderService(session, _NullPublisher()).cancel(order_id)


def test_a_passing_price_spike_is_requoted_once_it_has_passed_and_fills(rig):
    """The public swap reverts on a spike in its own slot; by the time the revert is confirmed
    the spike is arbitraged away, so the re-quote still pays the client's minimum, the order is
    tried once more and fills."""
    service, _chain, node, clock, session = rig
    order_id = new_order(session, "spike", mev_protection=False)
    plan_faults(node, "spike", ["price_jump"])
    assert run_until_done(service, clock, order_id) == ["retry:SLIPPAGE_EXCEEDED", "confirmed"]
    assert [e["status"] for e in ledger(node, "spike")] == ["failed", "landed"]


def test_a_protected_swap_that_meets_a_spike_fails_its_bundle_charges_nothing_and_fills(rig):
    """The same spike meets a protected swap: its bundle fails (all or nothing: nothing lands,
    nothing is charged), the status poll says so at once (the blockhash is still valid), the
    chain no longer shows a reason (the spike has passed), so the order is retried with a new
    version that pays more, which fills; the failed version is never re-sent."""
    service, chain, node, clock, session = rig
    order_id = new_order(session, "spike-bundled")
    plan_faults(node, "spike-bundled", ["price_jump"])
    started_ms = clock.now_ms()
    assert run_until_done(service, clock, order_id) == ["retry:BUNDLE_FAILED", "confirmed"]
    assert clock.now_ms() - started_ms < 20_000  # not a blockhash's lifetime (25 slots here)
    assert [e["status"] for e in ledger(node, "spike-bundled")] == ["landed"]
    first, second = dict.fromkeys(chain.sent)  # two versions, each sent until settled
    with session.begin():
        row = session.execute(
            text("SELECT tx_hash, fees, landing FROM orders WHERE id = :id"), {"id": order_id}
        ).one()
    assert row.landing["via"] == "bundle"
    assert row.landing["versions"] == 2
    assert row.fees["tipLamports"] >= 1_000
    # The failed version was never sent again once the second was signed.
    last_first = len(chain.sent) - 1 - chain.sent[::-1].index(first)
    assert last_first < chain.sent.index(second)


def test_a_limit_order_whose_swaps_slip_is_tried_again_at_its_limit_in_process(rig):
    """The deterministic twin of the live test of the same name: two planted spikes revert two
    swaps; a limit order's promise is its price, so each revert is retried at the limit (a
    market order gets one re-quote), and the third attempt fills, never below the limit."""
    service, _chain, node, clock, session = rig
    with session.begin():
        order = add_order(
            session,
            first_event={},
            type="limit",
            amount_in=Decimal("2"),
            slippage_bps=100,
            limit_price=Decimal("1"),
            trigger_price=Decimal("1"),
            client_order_id="limit-slips",
            mev_protection=False,  # a public swap reverts on chain (a bundle would fail)
        )
    plan_faults(node, "limit-slips", ["price_jump", "price_jump"])
    assert run_until_done(service, clock, order.id) == [
        "retry:SLIPPAGE_EXCEEDED",
        "retry:SLIPPAGE_EXCEEDED",
        "confirmed",
    ]
    with session.begin():
        minimums = (
            session.execute(
                text(
                    "SELECT (data->>'minAmountOut')::numeric FROM order_events "
                    "WHERE order_id = :id AND status = 'building' ORDER BY seq"
                ),
                {"id": order.id},
            )
            .scalars()
            .all()
        )
    assert len(minimums) == 3
    assert min(minimums) >= Decimal("2")  # 2 SOL × limitPrice 1
    assert [e["status"] for e in ledger(node, "limit-slips")] == ["failed", "failed", "landed"]


# -- a new market order claimed by its `routing` transition (the task's copy of it) -----------


def fresh_order(session: Session, memo: str) -> tuple[uuid.UUID, dict]:
    """A new market order as intake writes it, and the copy its first task carries."""
    with session.begin():
        order = add_order(
            session,
            first_event={},
            amount_in=Decimal("2"),
            slippage_bps=100,
            client_order_id=memo,
            created_at=datetime.now(UTC),
            last_seq=0,
        )
        copy = task_copy(order)
    assert copy is not None
    return order.id, copy


def lifecycle(session: Session, order_id: uuid.UUID) -> list[tuple[str, int]]:
    with session.begin():
        rows = session.execute(
            text("SELECT status, attempt FROM order_events WHERE order_id = :id ORDER BY seq"),
            {"id": order_id},
        )
        return [(status, attempt) for status, attempt in rows]


def test_a_fresh_order_is_claimed_by_its_routing_transition_one_statement_sooner(rig):
    service, chain, node, clock, session = rig
    fresh_id, copy = fresh_order(session, "fresh")
    usual_id, _ = fresh_order(session, "usual")
    with statements_sent() as by_copy:
        assert service.execute(fresh_id, "executor-a", copy) == Outcome.CONFIRMED
    with statements_sent() as usual:
        assert service.execute(usual_id, "executor-b") == Outcome.CONFIRMED
    assert len(by_copy) == len(usual) - 1
    assert not any(s.sql.lstrip().startswith("UPDATE orders") for s in by_copy)  # no lone claim
    assert (
        lifecycle(session, fresh_id)
        == lifecycle(session, usual_id)
        == [
            ("pending", 0),
            ("routing", 1),
            ("building", 1),
            ("submitted", 1),
            ("confirmed", 1),
        ]
    )
    with session.begin():
        row = session.execute(
            text("SELECT attempts, deliveries, lease_owner FROM orders WHERE id = :id"),
            {"id": fresh_id},
        ).one()
    assert tuple(row) == (1, 1, None)
    assert len(ledger(node, "fresh")) == 1


def test_a_copy_of_an_order_claimed_elsewhere_changes_nothing(rig):
    service, chain, node, clock, session = rig
    order_id, copy = fresh_order(session, "claimed-elsewhere")
    with session.begin():
        assert service.orders.claim(order_id, "other-executor", 60) is not None
    assert service.execute(order_id, "executor", copy) == Outcome.SKIPPED
    assert chain.sent == []
    assert lifecycle(session, order_id) == [("pending", 0)]
    with session.begin():
        row = session.execute(
            text("SELECT attempts, deliveries, lease_owner FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()
    assert tuple(row) == (1, 1, "other-executor")


def test_a_copy_of_a_cancelled_order_sends_nothing(rig):
    from order_engine.services.order import OrderService

    service, chain, node, clock, session = rig
    order_id, copy = fresh_order(session, "cancelled-first")
    OrderService(session, _NullPublisher()).cancel(order_id)
    assert service.execute(order_id, "executor", copy) == Outcome.SKIPPED
    assert chain.sent == []
    assert order_row(session, order_id).status == "cancelled"


def test_a_copy_of_an_order_an_earlier_attempt_changed_is_run_from_the_row(rig):
    service, chain, node, clock, session = rig
    order_id, copy = fresh_order(session, "tried-before")
    chain.plan = ["refuse"]
    with pytest.raises(RetryLater) as later:
        service.execute(order_id, "first-executor", copy)
    clock.advance_ms(int(later.value.countdown_s * 1000) + 1)
    # A duplicate of the first message, redelivered: the order is not fresh any more, so the
    # copy is set aside and the recorded transaction is settled first (the same bytes again).
    assert service.execute(order_id, "second-executor", copy) == Outcome.CONFIRMED
    assert chain.sent[0] == chain.sent[1]
    assert order_row(session, order_id).attempts == 2
    assert len(ledger(node, "tried-before")) == 1


def test_a_fresh_order_whose_routing_fails_before_its_claim_is_run_from_the_row(rig):
    service, chain, node, clock, session = rig
    order_id, copy = fresh_order(session, "route-failed")
    route, calls = service.router.route, []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RpcUnavailable("the pools' read timed out")
        return route(*args, **kwargs)

    service.router.route = fails_once
    assert service.execute(order_id, "executor", copy) == Outcome.CONFIRMED
    assert len(calls) == 2  # the usual way claimed it and routed it again
    assert order_row(session, order_id).attempts == 1  # the failure before the claim: no attempt


@pytest.mark.parametrize(
    "copy", [{}, {"accountId": "not-a-uuid"}, {"amount": "NaN?"}], ids=["empty", "id", "amount"]
)
def test_a_copy_that_is_not_one_of_ours_is_ignored(rig, copy):
    service, chain, node, clock, session = rig
    order_id, good = fresh_order(session, f"odd-copy-{len(copy)}")
    assert service.execute(order_id, "executor", {**good, **copy} if copy else {}) == (
        Outcome.CONFIRMED
    )
    assert order_row(session, order_id).attempts == 1


def pending_timed() -> float:
    """How many times an order's `pending` has been timed in this process (the metric)."""
    count = REGISTRY.get_sample_value(
        "order_engine_order_status_seconds_count", {"status": "pending"}
    )
    return count or 0.0


def test_a_fresh_orders_pending_is_timed_once_whichever_way_it_is_claimed(rig):
    service, chain, node, clock, session = rig
    by_copy, copy = fresh_order(session, "timed-by-copy")
    before = pending_timed()
    assert service.execute(by_copy, "executor-a", copy) == Outcome.CONFIRMED
    assert pending_timed() == before + 1

    elsewhere, copy = fresh_order(session, "timed-elsewhere")
    with session.begin():
        assert service.orders.claim(elsewhere, "other-executor", 60) is not None
    before = pending_timed()
    assert service.execute(elsewhere, "executor-b", copy) == Outcome.SKIPPED
    assert pending_timed() == before  # not claimed here: its claimer times it

    tried, copy = fresh_order(session, "timed-after-a-try")
    chain.plan = ["refuse"]
    with pytest.raises(RetryLater):
        service.execute(tried, "executor-c", copy)
    clock.advance_ms(60_000)
    before = pending_timed()
    assert service.execute(tried, "executor-d", copy) == Outcome.CONFIRMED  # the usual claim
    assert pending_timed() == before + 1
