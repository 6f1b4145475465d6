"""Orders whose swap transaction can never be built: refused at intake when their memo
cannot fit (through the real API), and, when one gets past intake anyway, failed with its code
on its first attempt, never retried, never re-sent by the reconciler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from sqlalchemy.orm import Session

from order_engine.domain.errors import SwapNotBuildable
from order_engine.domain.tokens import resolve
from order_engine.repositories.order import OrderRepository
from order_engine.services.execution import Outcome
from order_engine.services.execution.swap_transaction import build_swap, swap_legs
from order_engine.services.task_copy import task_copy

# The executor's in-process rig (its fixture, found here by name).
from tests.integration.test_execution_recovery import order_row, rig  # noqa: F401
from tests.support.clients import order_body, request, stream
from tests.support.factories import add_order

pytestmark = pytest.mark.integration

EMOJI, HAN = "😀" * 128, "中" * 128  # 512 and 384 bytes of UTF-8, 128 characters each
SPLIT_AMOUNT = Decimal("3000")  # SOL→USDC: split across both venues on the seed-7 market


@pytest.mark.broker
@pytest.mark.parametrize(("client_id", "size"), [(EMOJI, 512), (HAN, 384)])
def test_a_client_id_too_long_for_the_memo_is_refused_at_intake_in_bytes(
    live_stack, client_id, size
):
    key = f"unbuildable-{uuid.uuid4()}"
    response = request(
        "POST",
        f"{live_stack.base_url}/api/orders/execute",
        order_body(clientOrderId=client_id, amount=str(SPLIT_AMOUNT)),
        headers={"Idempotency-Key": key},
    )
    assert response.status == 422, response.body
    [problem] = response.body["errors"]["clientOrderId"]
    assert "At most 128 bytes of UTF-8" in problem
    assert f"this one is {size} bytes" in problem
    assert live_stack.order_count(idempotency_key=key) == 0


def new_row(session: Session, client_id: str, amount: Decimal) -> tuple[uuid.UUID, dict]:
    """An order written past intake, as intake writes one, and its first task's copy."""
    with session.begin():
        now = datetime.now(UTC)
        order = add_order(
            session,
            first_event={"clientOrderId": client_id},
            amount_in=amount,
            slippage_bps=300,
            client_order_id=client_id,
            created_at=now,
            dispatched_at=now,
            last_seq=0,
        )
        return order.id, task_copy(order)


def never_reconciled(session: Session, order_id: uuid.UUID) -> bool:
    """Whether the reconciler's sweep, with every order counted stale, passes it by (the
    sweep's marks are rolled back)."""
    with session.begin():
        stale = OrderRepository(session).claim_stale(0, 100_000)
        session.rollback()
    return order_id not in stale


@pytest.mark.broker
def test_an_order_past_intake_that_cannot_fit_fails_on_its_first_attempt(live_stack):
    with Session(live_stack.engine, expire_on_commit=False) as session:
        order_id, _copy = new_row(session, EMOJI, Decimal("0.25"))
        with live_stack.broker_app() as producer:
            producer.send_task("orders.execute_order", kwargs={"order_id": str(order_id)})
        row = live_stack.wait_status(str(order_id), "failed", "confirmed")
        assert (row["status"], row["failure_code"]) == ("failed", "TRANSACTION_TOO_LARGE")
        assert (row["attempts"], row["deliveries"], row["tx_hash"]) == (1, 1, None)
        assert row["failure_retryable"] is False
        assert never_reconciled(session, order_id)
    events = stream(f"{live_stack.ws_url}/api/orders/execute?orderId={order_id}").events
    assert [e["status"] for e in events] == ["pending", "failed"]
    assert events[-1]["data"]["error"]["code"] == "TRANSACTION_TOO_LARGE"
    assert "1232-byte limit" in events[-1]["data"]["error"]["message"]
    assert live_stack.statuses(str(order_id)) == ["pending", "failed"]


def test_a_split_whose_memo_cannot_fit_fails_at_once_and_sends_nothing(rig):  # noqa: F811
    service, chain, node, clock, session = rig
    order_id, copy = new_row(session, HAN, SPLIT_AMOUNT)
    # Intake's copy first (the production path): it routes, builds, fails, then claims.
    assert service.execute(order_id, "executor", copy) == Outcome.FAILED
    assert chain.sent == []
    row = order_row(session, order_id)
    assert (row.status, row.attempts, row.tx_hash) == ("failed", 1, None)
    assert never_reconciled(session, order_id)
    # A duplicate delivery finds it finished.
    assert service.execute(order_id, "executor") == Outcome.SKIPPED


def test_legs_the_builder_refuses_are_a_failure_no_retry_can_cure(rig):  # noqa: F811
    service, _chain, _node, _clock, _session = rig
    sol, usdc = resolve("SOL"), resolve("USDC")
    atoms = sol.to_atoms(Decimal("2"))
    decision = service.router.route(sol, usdc, atoms)
    with pytest.raises(SwapNotBuildable) as refused:
        build_swap(
            wallet=Keypair(),
            legs=swap_legs(sol, usdc, decision, 1),
            amount_in=atoms + 1,  # not what the legs sell
            blockhash=str(Hash.default()),
            memo="order",
            limit=200_000,
            price=1_000,
            tip=None,
        )
    assert (refused.value.code, refused.value.retryable) == ("SWAP_NOT_BUILDABLE", False)
