"""The happy path of an attempt: route, build, send, settle (or wait again, for a triggered
order the market left)."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError

from order_engine.chain.client import SignatureStatus, TransactionBalances, program_error
from order_engine.domain import amounts, event_data
from order_engine.domain.errors import (
    BlockhashExpired,
    ExecutionError,
    RpcUnavailable,
    TransactionUnconfirmed,
)
from order_engine.domain.status import OrderStatus
from order_engine.domain.tokens import WSOL_MINT
from order_engine.infra import metrics
from order_engine.live.events import event_payload
from order_engine.repositories.transitions import Step, Transition
from order_engine.routing import RouteDecision
from order_engine.routing.in_flight import InFlightSwap
from order_engine.services.execution import landing
from order_engine.services.execution.attempt import Attempt, Outcome, slots
from order_engine.services.execution.build import (
    Builder,
    Built,
    ComputeBudgetExceeded,
    bundle_failure,
    over_budget,
)
from order_engine.services.execution.steps import Context, Steps
from order_engine.services.triggers import awaited

log = logging.getLogger(__name__)
RECHECK_S = 0.05  # a re-send time this close to now is now

# The statuses an attempt can start from with nothing built yet: a `pending` claim, or a
# `routing` one the trigger engine routed.
_UNBUILT = frozenset({OrderStatus.PENDING, OrderStatus.ROUTING})


def _same_transaction_as_another(error: IntegrityError) -> bool:
    """Whether `error` is another order holding the transaction this one tried to record."""
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == "uq_orders_tx_hash"


def in_flight_legs(attempt: Attempt, decision: RouteDecision) -> list[InFlightSwap]:
    """The swap's legs as the router's record of this process's swaps in flight holds them."""
    mint_in, mint_out = attempt.token_in.mint, attempt.token_out.mint
    return [
        InFlightSwap(leg.pool_id, bool(leg.view.ref.swaps(mint_in, mint_out)), leg.amount_in)
        for leg in decision.legs
        if leg.view is not None
    ]


def recorded_legs(ctx: Context, attempt: Attempt) -> list[InFlightSwap]:
    """The legs of the order's recorded route, for its transaction sent again (a leg this
    process cannot read is left out: the count is a courtesy to the next quotes, never a
    reason for a re-broadcast to fail)."""
    mint_in, mint_out = attempt.token_in.mint, attempt.token_out.mint
    legs = []
    for leg in (attempt.order.route or {}).get("legs", ()):
        ref = ctx.router.pools.ref(str(leg.get("poolId")))
        try:
            amount_in = attempt.token_in.to_atoms(Decimal(str(leg.get("amountIn"))))
        except (ArithmeticError, ValueError):
            continue
        if ref is not None:
            legs.append(InFlightSwap(ref.address, bool(ref.swaps(mint_in, mint_out)), amount_in))
    return legs


class Runner:
    """Runs an attempt that has nothing on its way to the chain: a new transaction is routed,
    built, recorded with its `routing` and `building` events, sent and settled."""

    def __init__(self, ctx: Context, steps: Steps) -> None:
        self.ctx = ctx
        self.steps = steps
        self.builder = Builder(ctx)

    def run(self, attempt: Attempt) -> Outcome:
        """Route, build, send and settle. A FRESH attempt's order is not claimed yet: the
        transition to `routing` claims it (NotClaimed, with nothing written, if it cannot)."""
        order = attempt.order
        decision = self.ctx.router.route(
            attempt.token_in, attempt.token_out, attempt.amount_in, after_ours=True
        )
        floor = amounts.price_floor(order, attempt.token_out)
        if decision.amount_out < floor and attempt.status in _UNBUILT:
            # The market moved back between the trigger and this quote: wait again rather
            # than send a swap the limit would make the chain refuse.
            return self._rearm(attempt, decision.amount_out, floor)
        # In flight from its route on, with no I/O in between: the orders this process routes
        # next, a burst's arriving together too, are quoted after it.
        with self.ctx.router.in_flight.holding(str(order.id), in_flight_legs(attempt, decision)):
            return self._build_and_send(attempt, decision)

    def _build_and_send(self, attempt: Attempt, decision: RouteDecision) -> Outcome:
        """Build and record the routed swap (its `routing` and `building` events), send it and
        settle it."""
        order = attempt.order
        routing_event = decision.as_event()
        route = routing_event["decision"]
        if (order.route or {}).get("requoted"):
            route["requoted"] = True  # at most one re-quote per order, across attempts
        minimum = amounts.minimum_out(order, attempt.token_out, decision.amount_out)
        routed = {
            "dex": decision.dex,
            "route": route,
            "quoted_amount_out": attempt.token_out.from_atoms(decision.amount_out),
        }
        memo = order.client_order_id or str(order.id)
        attempt.minimum = minimum
        while True:
            built = self.builder.build(attempt, decision, route, minimum, memo)
            try:
                self._record_build(attempt, routing_event, routed, built)
                break
            except IntegrityError as error:
                if memo == str(order.id) or not _same_transaction_as_another(error):
                    raise
                # Another order of this wallet (the same client id, pair and amount) built
                # these very bytes on this blockhash. Nothing was written; this order's
                # transaction carries its own id instead, which no other order's can.
                log.info("order %s: its transaction was another order's; rebuilt", order.id)
                memo = str(order.id)
        attempt.last_valid_height = built.blockhash.last_valid_block_height
        attempt.expires_at = time.monotonic() + slots(built.slots_left).total_seconds()
        attempt.plan, attempt.signed, attempt.shape = built.plan, built.encoded, built.shape
        return self.send_and_settle(
            attempt, built.encoded, built.signature, decision.dex, decision.amount_out
        )

    def _record_build(
        self,
        attempt: Attempt,
        routing_event: dict[str, Any],
        routed: dict[str, Any],
        built: Built,
    ) -> None:
        if attempt.status is OrderStatus.ROUTING:
            # Routed by the trigger engine (its event holds that decision); the route built is
            # this fresher one, which the `building` event and the order's columns record.
            self.steps.advance(attempt, OrderStatus.BUILDING, built.event, routed | built.values)
        else:
            # Routing and building are one unit of work: quoting and signing are local and
            # take a millisecond, so both transitions (and their events) are one statement.
            self.steps.advance_many(
                attempt,
                [
                    Step(OrderStatus.ROUTING, routing_event, routed),
                    Step(OrderStatus.BUILDING, built.event, built.values),
                ],
            )

    def send_and_settle(
        self, attempt: Attempt, encoded: str, signature: str, dex: str, quoted: int
    ) -> Outcome:
        self._send(attempt, encoded)
        if attempt.status is OrderStatus.BUILDING:
            submitted = {"dex": dex, "txHash": signature}
            self.steps.advance(attempt, OrderStatus.SUBMITTED, submitted, {})
        return self.settle(attempt, dex, quoted, self._confirmation(attempt, signature, encoded))

    def _confirmation(self, attempt: Attempt, signature: str, encoded: str) -> SignatureStatus:
        """Wait for the transaction's confirmation, at most until its blockhash has expired
        (then it can never land) or CONFIRM_TIMEOUT_S, whichever comes first.

        Meanwhile the same signed bytes are sent again once they are late by this process's
        recent landings (`LandingDelays`), then every REBROADCAST_INTERVAL_S: a leader may
        never have received them, and the engine sends with `maxRetries: 0`, so nobody
        else re-sends them (Solana's documentation, "Retrying Transactions": a node otherwise
        re-broadcasts on its own schedule, and `maxRetries` hands that to the application).
        One signature lands at most once, however often it is sent.
        """
        last_valid = attempt.last_valid_height
        timeout_s = float(self.ctx.settings.confirm_timeout_s)
        if attempt.expires_at is not None:  # built in this attempt: no need to ask the chain
            timeout_s = min(timeout_s, max(attempt.expires_at - time.monotonic(), 0.0) + 1.0)
        elif last_valid is not None:
            remaining = slots(last_valid - self.ctx.chain.block_height() + 1).total_seconds()
            timeout_s = min(timeout_s, max(remaining, 0.0) + 1.0)
        status = self._await_sending_again(attempt, signature, encoded, timeout_s)
        if status is not None:
            return status
        height = self.ctx.chain.block_height()
        if last_valid is None or height > last_valid:
            metrics.transaction_not_landed(_via(attempt), "expired")
            self._unlanded(attempt)
            raise BlockhashExpired(f"{signature} was not included before its blockhash expired")
        raise TransactionUnconfirmed(
            f"{signature} not confirmed within {timeout_s:.0f}s",
            retry_after_s=slots(last_valid - height + 2).total_seconds(),
        )

    def _await_sending_again(
        self, attempt: Attempt, signature: str, encoded: str, timeout_s: float
    ) -> SignatureStatus | None:
        """The status once confirmed; None after `timeout_s` or once the node says the bytes
        expired. They are sent again once late by this process's recent landings, asked anew
        when that time comes (what landed meanwhile, the first landings of a burst, may say
        it is not late yet), then every REBROADCAST_INTERVAL_S."""
        interval_s = float(self.ctx.settings.rebroadcast_interval_s)
        delays = self.ctx.chain.landing_delays
        late_s = lambda: delays.first_resend_s(interval_s) if interval_s else timeout_s  # noqa: E731
        bundle = _via(attempt) == landing.BUNDLE
        deadline, waited_s, due_s, resent = time.monotonic() + timeout_s, 0.0, late_s(), False
        while True:
            chunk_s = max(min(due_s, timeout_s) - waited_s, 0.0)
            status = self.ctx.chain.wait_for_status(signature, chunk_s, bundle=bundle)
            if status is not None:
                return status
            waited_s += chunk_s
            if waited_s >= timeout_s or time.monotonic() >= deadline:
                return None
            if not resent and (later_s := late_s()) > waited_s + RECHECK_S:
                due_s = later_s
                continue
            if not self._resend(attempt, encoded):
                return None
            resent, due_s = True, waited_s + (interval_s or timeout_s)

    def _landed(
        self, attempt: Attempt, dex: str, status: SignatureStatus, balances: TransactionBalances
    ) -> landing.Plan | None:
        """What a landed version paid (the order's report, the metrics) and consumed (its
        shape's figure); its plan."""
        plan = attempt.plan or landing.plan_of(attempt.order)
        if plan is not None:
            attempt.report = landing.report(plan, balances)
            fees = attempt.report["fees"]
            slots = balances.slot - plan.sent_slot if plan.sent_slot else None
            if slots is not None:
                self.ctx.chain.landing_delays.landed(slots)
            metrics.transaction_landed(
                plan.via, dex, slots, fees["priorityLamports"], fees["tipLamports"]
            )
        self._learn_units(attempt, status, balances.units_consumed)
        return plan

    def _learn_units(self, attempt: Attempt, status: SignatureStatus, units: int | None) -> None:
        """What a swap of its shape consumes, from its landing; a shape whose swap ran out of
        compute is forgotten (the next is simulated) and the attempt retried."""
        if attempt.shape is None:
            return
        if status.succeeded:
            self.ctx.units.learn(attempt.shape, units)
        elif over_budget(status.err):
            self.ctx.units.forget(attempt.shape)
            raise ComputeBudgetExceeded(f"{status.signature} ran out of compute units")

    def _unlanded(self, attempt: Attempt) -> None:
        """The report of a version that can no longer land: nothing charged."""
        plan = attempt.plan or landing.plan_of(attempt.order)
        if plan is not None:
            attempt.report = landing.report(plan, None)

    def _send(self, attempt: Attempt, encoded: str) -> None:
        """To the block engine (a bundle of one, never public) or the RPC node, as planned."""
        if _via(attempt) == landing.BUNDLE:
            self.ctx.chain.block_engine.send_transaction(encoded)
        else:
            self.ctx.chain.send_transaction(encoded)

    def _resend(self, attempt: Attempt, encoded: str) -> bool:
        """Send the same signed bytes again; False once the node says their blockhash has
        expired (they can never land). An unreachable node is asked again next time."""
        try:
            self._send(attempt, encoded)
        except BlockhashExpired:
            return False
        except ExecutionError as exc:
            log.info("order %s: re-broadcast not accepted (%s)", attempt.order.id, exc.code)
        return True

    def _rearm(self, attempt: Attempt, quoted: int, floor: int) -> Outcome:
        """Put a triggered order back to waiting (the attempt is not counted, the trigger's
        route forgotten): compare-and-set on our lease, with a `pending` event saying what it
        waits for again."""
        order = attempt.order
        data = event_data.rearmed(
            waiting_for=awaited(order),
            token_out=attempt.token_out,
            quoted=quoted,
            required=floor,
        )
        values = {
            "waiting": True,
            "triggered_at": None,
            "dex": None,
            "route": None,
            "quoted_amount_out": None,
            "lease_owner": None,
            "lease_until": None,
            "attempts": max(order.attempts - 1, 0),
        }
        events = self.ctx.committer.commit(
            Transition.of(
                order.id,
                attempt.status,
                [Step(OrderStatus.PENDING, data, values)],
                lease_owner=attempt.executor,
                require_waiting=False,
            )
        )
        if events is None:
            return Outcome.LEASE_LOST
        self.ctx.publisher.publish(event_payload(events[0]))
        log.info("order %s: quote %s below its floor %s; waiting again", order.id, quoted, floor)
        return Outcome.REARMED

    def settle(self, attempt: Attempt, dex: str, quoted: int, status: SignatureStatus) -> Outcome:
        """Record the outcome of a transaction the chain has confirmed (or whose bundle the
        block engine reports failed: it never lands, and a new version may be built at once)."""
        if status.bundle_failed:
            raise bundle_failure(self.ctx, attempt, status)
        balances = status.balances or self.ctx.chain.transaction_balances(status.signature)
        if balances is None:
            if not status.succeeded:  # refused on chain: that is known without its record
                raise program_error(status.err)
            raise RpcUnavailable(f"the node has no record of confirmed {status.signature} yet")
        plan = self._landed(attempt, dex, status, balances)
        if not status.succeeded:
            # It landed, but a program refused the swap (and the chain charged the fee).
            raise program_error(status.err)
        token_in, token_out = attempt.token_in, attempt.token_out
        native = token_out.mint == WSOL_MINT
        received = balances.received(str(self.ctx.wallet.pubkey()), token_out.mint, native=native)
        if native and plan is not None:
            received += plan.tip  # the tip left the same lamports: a cost, not less filled
        fill = amounts.Fill.of(token_in, token_out, attempt.amount_in, received, quoted)
        self.steps.advance(
            attempt,
            OrderStatus.CONFIRMED,
            event_data.confirmed(
                dex=dex,
                signature=status.signature,
                slot=status.slot,
                fill=fill,
                token_out=token_out,
                quoted=quoted,
            )
            | (attempt.report or {}),
            {
                "amount_out": fill.amount_out,
                "executed_price": fill.price,
                "lease_owner": None,
                "lease_until": None,
                **(attempt.report or {}),
            },
        )
        metrics.order_finished(attempt.order.type, "confirmed", attempt.order.created_at)
        log.info(
            "order %s confirmed on %s: %s %s -> %s %s (%s)",
            attempt.order.id,
            dex,
            fill.amount_in,
            token_in.symbol,
            fill.amount_out,
            token_out.symbol,
            status.signature,
        )
        return Outcome.CONFIRMED


def _via(attempt: Attempt) -> str:
    """How the order's latest version is sent: as built here, or as its columns say."""
    plan = attempt.plan or landing.plan_of(attempt.order)
    return plan.via if plan is not None else landing.RPC
