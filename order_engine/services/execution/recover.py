"""What is already on its way: an order's latest transaction is settled before anything new
is built for it — recorded if it landed, sent again while it may still land, waited out
(parked) when it must not be sent again."""

from __future__ import annotations

import logging

from order_engine.chain.client import program_error
from order_engine.domain.errors import ExecutorLost, TransactionUnconfirmed
from order_engine.domain.status import OrderStatus
from order_engine.infra.db import unit_of_work
from order_engine.services.execution.attempt import (
    Attempt,
    Outcome,
    check_delivery_budget,
    slots,
)
from order_engine.services.execution.run import Runner, recorded_legs
from order_engine.services.execution.steps import Context, Steps

log = logging.getLogger(__name__)


class Recovery:
    """Settles an order's outstanding transaction, through the runner's send and settle."""

    def __init__(self, ctx: Context, steps: Steps, runner: Runner) -> None:
        self.ctx = ctx
        self.steps = steps
        self.runner = runner

    def settle_outstanding(self, attempt: Attempt) -> Outcome | None:
        """Settle the order's latest transaction; None when a new one may be built.

        Landed → walk the lifecycle to `confirmed`. Failed on chain → a fresh attempt builds
        anew (a take-over records that attempt's failure instead). Unknown with a valid
        blockhash → re-broadcast the same signed bytes. Unknown after expiry → it can never
        land: a fresh attempt builds anew (a take-over fails that attempt, retryably).
        """
        order = attempt.order
        signature = order.tx_hash or ""
        status = self.ctx.chain.signature_statuses([signature]).get(signature)
        if status is None:
            if self._may_still_land(attempt):
                if not order.signed_tx:  # recorded before signed bytes were kept: wait it out
                    return self._park(attempt)
                return self._rebroadcast(attempt)
            if attempt.taken_over:
                check_delivery_budget(attempt, self.ctx.settings)
                raise ExecutorLost(f"{signature} never reached the chain and can no longer land")
            return None
        if not status.is_confirmed:
            status = self.ctx.chain.wait_for_status(signature, self.ctx.settings.confirm_timeout_s)
            if status is None:
                raise TransactionUnconfirmed(f"{signature} is processed but not yet confirmed")
        if status.succeeded:
            log.warning("order %s: %s landed; recording it", order.id, signature)
            data = {"recovered": True, "txHash": signature, "dex": order.dex}
            self.steps.walk_to(attempt, OrderStatus.SUBMITTED, data)
            return self.runner.settle(attempt, order.dex or "", attempt.quoted_atoms(), status)
        if attempt.taken_over:
            raise program_error(status.err)
        return None

    def _may_still_land(self, attempt: Attempt) -> bool:
        last_valid = attempt.last_valid_height
        return last_valid is not None and self.ctx.chain.block_height() <= last_valid

    def _rebroadcast(self, attempt: Attempt) -> Outcome:
        """Send the same signed transaction again: it lands at most once, whoever sent it."""
        order = attempt.order
        if order.deliveries > self.ctx.settings.order_max_deliveries:
            return self._park(attempt)
        data = {"rebroadcast": True, "txHash": order.tx_hash, "dex": order.dex}
        self.steps.walk_to(attempt, OrderStatus.BUILDING, data, renew_lease=True)
        log.info("order %s: re-broadcasting %s", order.id, order.tx_hash)
        attempt.signed = order.signed_tx
        # In flight again for this process's next routes (`routing/in_flight.py`).
        with self.ctx.router.in_flight.holding(str(order.id), recorded_legs(self.ctx, attempt)):
            return self.runner.send_and_settle(
                attempt,
                order.signed_tx or "",
                order.tx_hash or "",
                order.dex or "",
                attempt.quoted_atoms(),
            )

    def _park(self, attempt: Attempt) -> Outcome:
        """An order whose last transaction may still land but must not be sent again (a
        poison order whose deliveries keep dying): send nothing, and hold its lease until that
        transaction's blockhash has expired, when the reconciler's next delivery settles it."""
        order = attempt.order
        remaining_slots = (attempt.last_valid_height or 0) - self.ctx.chain.block_height() + 2
        hold_s = max(1, int(slots(remaining_slots).total_seconds()) + 1)
        with unit_of_work(self.ctx.session):
            self.ctx.orders.renew_lease(order.id, attempt.executor, hold_s)
        log.warning("order %s: %d deliveries; parked for %ss", order.id, order.deliveries, hold_s)
        return Outcome.PARKED
