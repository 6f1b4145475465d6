"""Failures: an attempt that failed is retried while it has attempts left (re-quoted once
after a slippage revert, if the market still pays the client's minimum), else the order
fails, once."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from order_engine.domain import amounts, event_data
from order_engine.domain.errors import AttemptsExhausted, ExecutionError, SlippageExceeded
from order_engine.domain.status import IN_FLIGHT, OrderStatus
from order_engine.domain.tokens import decimal_text
from order_engine.infra import metrics
from order_engine.infra.db import unit_of_work
from order_engine.services.execution import landing
from order_engine.services.execution.attempt import Attempt, LeaseLost, Outcome, RetryLater
from order_engine.services.execution.retry_policy import retry_countdown
from order_engine.services.execution.steps import Context, Steps

log = logging.getLogger(__name__)


class Failures:
    """Records an attempt's failure: a retry (`RetryLater`) or the order's end in `failed`."""

    def __init__(self, ctx: Context, steps: Steps) -> None:
        self.ctx = ctx
        self.steps = steps

    def fail_attempt(self, attempt: Attempt, error: ExecutionError) -> Outcome:
        order = attempt.order
        has_attempts_left = order.attempts < self.ctx.settings.order_max_attempts
        if error.retryable and has_attempts_left:
            return self._schedule_retry(attempt, error, {})
        if isinstance(error, SlippageExceeded) and has_attempts_left:
            requote = self._requote_after_slippage(attempt)
            if requote is not None:
                return self._schedule_retry(attempt, error, requote, countdown_s=0.0)
        final = error
        if error.retryable:
            final = AttemptsExhausted(
                f"gave up after {order.attempts} attempts; last error {error.code}: {error.message}"
            )
        report = final_report(attempt)
        data = event_data.failed(final=final, last=error, attempts=order.attempts) | report
        values = {
            "failure_code": final.code,
            "failure_reason": final.message,
            "failure_retryable": final.retryable,
            "lease_owner": None,
            "lease_until": None,
            **report,
        }
        try:
            self.steps.advance(attempt, OrderStatus.FAILED, data, values, expected=IN_FLIGHT)
        except LeaseLost:
            log.warning("order %s: lease lost before recording failure %s", order.id, error.code)
            return Outcome.LEASE_LOST
        metrics.order_finished(order.type, "failed", order.created_at, final.code)
        log.warning(
            "order %s failed after %s attempt(s): %s %s",
            order.id,
            order.attempts,
            final.code,
            final.message,
        )
        return Outcome.FAILED

    def _requote_after_slippage(self, attempt: Attempt) -> dict[str, Any] | None:
        """One fresh quote after a slippage revert: worth a retry only if it still pays at
        least the minimum the client accepted. None otherwise.

        A limit or sniper order accepted a price, not the quote that missed: it is tried again
        while it has attempts, and its next attempt waits again if the market is now below its
        limit (`Runner.run`), so a stale quote never fails an order whose limit still holds.
        """
        floor = amounts.price_floor(attempt.order, attempt.token_out)
        if floor:
            minimum = decimal_text(attempt.token_out.from_atoms(floor))
            return {"requote": {"clientMinimum": minimum, "limitHolds": True}}
        with unit_of_work(self.ctx.session):
            order = self.ctx.orders.get(attempt.order.id)  # the minimum set while building
        route = (order.route if order else None) or {}
        if order is None or route.get("requoted"):
            return None
        if order.min_amount_out is not None:
            client_minimum = attempt.token_out.to_atoms(order.min_amount_out)
            minimum_text = str(order.min_amount_out)
        elif attempt.minimum is not None:  # its simulation failed: nothing was recorded
            client_minimum = attempt.minimum
            minimum_text = decimal_text(attempt.token_out.from_atoms(client_minimum))
        else:
            return None
        try:
            decision = self.ctx.router.route(
                attempt.token_in, attempt.token_out, attempt.amount_in, after_ours=True
            )
        except ExecutionError:
            return None
        if decision.amount_out < client_minimum:
            return None
        return {
            "requote": {
                "dex": decision.dex,
                "amountOut": decimal_text(attempt.token_out.from_atoms(decision.amount_out)),
                "clientMinimum": minimum_text,
            }
        }

    def _schedule_retry(
        self,
        attempt: Attempt,
        error: ExecutionError,
        extra: dict[str, Any],
        countdown_s: float | None = None,
    ) -> Outcome:
        order = attempt.order
        if countdown_s is None:
            seed = f"{self.ctx.settings.dex_seed}:backoff:{order.id}:{order.attempts}"
            countdown_s = retry_countdown(self.ctx.settings, error, seed, order.attempts)
        next_at = self.ctx.now() + timedelta(seconds=countdown_s)
        data = event_data.retry_scheduled(
            error=error,
            countdown_s=countdown_s,
            next_attempt_at=next_at,
            attempts_left=self.ctx.settings.order_max_attempts - order.attempts,
            extra=extra,
        )
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "next_attempt_at": next_at,
        }
        if "requote" in extra:
            values["route"] = {**(order.route or {}), "requoted": True}
        if attempt.report and attempt.report["landing"]["landedSlot"] is not None:
            values.update(attempt.report)  # it landed and paid: what the order reports now
        try:
            self.steps.advance(attempt, OrderStatus.PENDING, data, values, expected=IN_FLIGHT)
        except LeaseLost:
            return Outcome.LEASE_LOST
        metrics.order_retried(error.code)
        log.info(
            "order %s attempt %s failed (%s); retry in %.2fs",
            order.id,
            order.attempts,
            error.code,
            countdown_s,
        )
        raise RetryLater(error, countdown_s)


def final_report(attempt: Attempt) -> dict[str, Any]:
    """The `fees` and `landing` a failed order reports: its latest version's as the chain says
    (this attempt settled it, or an earlier one recorded it landed), else nothing charged."""
    if attempt.report is not None:
        return attempt.report
    order = attempt.order
    if order.landing and order.landing.get("landedSlot") is not None:
        return {"fees": order.fees, "landing": order.landing}
    plan = landing.plan_of(order)
    return {} if plan is None else landing.report(plan, None)
