"""Execute one order: claim it, route, build, send, confirm — or retry, or fail.

Every step is a compare-and-set transition committed on its own (never holding a transaction
across a chain call), followed by a publish of its event. The worker holds a lease on the order
while it runs; a transition only applies while that lease is ours, so a duplicate delivery or a
second worker that took over an expired lease can never move the order twice.

Never two swaps for one order: an order keeps the signed transaction of its latest attempt and
that transaction's blockhash expiry. Before anything new is built, that transaction is settled
by asking the chain: landed → recorded; failed on chain → a new attempt may go; unknown while
its blockhash is valid → the same bytes are re-broadcast (the chain processes a signature at
most once); unknown after expiry → it can never land, so a new transaction may go. No task
ever sleeps waiting for a blockhash to expire (research/dex.md §3.5, DESIGN §5).

Retries: a retryable failure with attempts left puts the order back to `pending` (with the
error and when the next attempt runs) and raises `RetryLater`, which the Celery task turns into
a retry with that countdown. The database counts attempts; the last one ends in `failed`, once.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from solders.keypair import Keypair
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from order_engine.chain import tx as transactions
from order_engine.chain.client import Blockhash, Chain, SignatureStatus, program_error
from order_engine.chain.mints import token_for
from order_engine.config import Settings
from order_engine.domain import amounts, event_data
from order_engine.domain.errors import (
    AttemptsExhausted,
    BlockhashExpired,
    DeliveriesExhausted,
    ExecutionError,
    ExecutorLost,
    RpcUnavailable,
    SlippageExceeded,
    TransactionUnconfirmed,
)
from order_engine.domain.status import HAPPY_PATH, IN_FLIGHT, OrderStatus
from order_engine.domain.tokens import WSOL_MINT, Token, decimal_text
from order_engine.infra import logs, metrics
from order_engine.infra.db import unit_of_work
from order_engine.live.events import Publisher, app_publisher, event_payload
from order_engine.models import Order
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.transitions import (
    Step,
    Transition,
    TransitionCommitter,
    lease_expiry,
)
from order_engine.routing import RouteDecision, Router
from order_engine.services.execution.retry_policy import retry_countdown
from order_engine.services.execution.swap_transaction import COMPUTE_UNIT_LIMIT_PER_LEG, build_swap
from order_engine.services.task_copy import as_claimed
from order_engine.services.trigger import waiting_for

log = logging.getLogger(__name__)

SLOT_S = 0.4


# The statuses an attempt can start from with nothing built yet: a `pending` claim, or a
# `routing` one the trigger engine routed.
_UNBUILT = frozenset({OrderStatus.PENDING, OrderStatus.ROUTING})


class Outcome(enum.StrEnum):
    """What one delivery of `execute_order` did."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not ours to run: claimed elsewhere, finished or unknown
    LEASE_LOST = "lease-lost"  # another executor took the order over meanwhile
    PARKED = "parked"  # a poison order waits for its last transaction's blockhash to expire
    REARMED = "rearmed"  # a limit/sniper order whose price moved away waits again


class RetryLater(Exception):
    """The attempt failed in a retryable way; run the next one after `countdown_s`."""

    def __init__(self, error: ExecutionError, countdown_s: float) -> None:
        super().__init__(f"{error.code}: {error.message}; next attempt in {countdown_s:.2f}s")
        self.error = error
        self.countdown_s = countdown_s


class LeaseLost(ExecutionError):
    """Another executor owns the order now; this one must stop without side effects."""

    code, retryable = "LEASE_LOST", False


class NotClaimed(Exception):
    """A fresh order's claiming transition matched nothing: it is not fresh any more."""


class Entry(enum.Enum):
    """How an attempt came to hold its order, which decides what its first transition checks."""

    # Intake's copy of a new market order, the row not read: its first transition also claims
    # it, if it is still fresh (NotClaimed, nothing written, if not).
    FRESH = "fresh"
    # Claimed by `OrderRepository.claim`: a `pending` order, or one the trigger engine routed.
    CLAIMED = "claimed"
    # Taken over mid-flight from an executor whose lease expired: that attempt is finished.
    TAKEN_OVER = "taken over"


@dataclass
class Attempt:
    order: Order
    executor: str
    token_in: Token
    token_out: Token
    amount_in: int
    status: OrderStatus
    # How it came to hold the order; FRESH becomes CLAIMED once its first transition claimed it.
    entry: Entry
    # The blockhash expiry of the order's latest transaction (this attempt's once built), and
    # when that is on this process's monotonic clock (known only for a transaction built here).
    last_valid_height: int | None = None
    expires_at: float | None = None
    # Times the statuses this executor moves the order through (metrics only).
    clock: metrics.StatusClock = field(default_factory=metrics.StatusClock)

    @property
    def taken_over(self) -> bool:
        return self.entry is Entry.TAKEN_OVER


@dataclass(frozen=True)
class _Built:
    """A signed swap, and what recording it writes: its `building` event and the columns."""

    blockhash: Blockhash
    signature: str
    encoded: str
    slots_left: int
    event: dict[str, Any]
    values: dict[str, Any]


def _same_transaction_as_another(error: IntegrityError) -> bool:
    """Whether `error` is another order holding the transaction this one tried to record."""
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == "uq_orders_tx_hash"


def new_executor_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class ExecutionService:
    def __init__(
        self,
        session: Session,
        router: Router,
        chain: Chain,
        wallet: Keypair,
        publisher: Publisher,
        settings: Settings,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        committer: TransitionCommitter | None = None,
    ) -> None:
        # The clock of the event data's timestamps (a replay on virtual time passes its own).
        self.now = now
        self.session = session
        self.orders = OrderRepository(session)
        # Every step commits on its own, at once (on the session's engine unless given).
        self.committer = committer or TransitionCommitter.of_session(session)
        self.router = router
        self.chain = chain
        self.wallet = wallet
        self.publisher = publisher
        self.settings = settings

    def execute(
        self, order_id: uuid.UUID, executor: str, copy: dict[str, Any] | None = None
    ) -> Outcome:
        """Run one attempt of the order if it is ours to run; return what happened.

        `copy`: the task's copy of a new market order (`task_copy`). The order is then routed
        and built first and claimed by the statement that records `routing`, if it is still
        fresh; if it is not (claimed elsewhere, cancelled, or an earlier delivery got further),
        or routing it failed before that, it is run the usual way: claimed, then routed."""
        if copy is not None:
            order = as_claimed(order_id, copy)
            outcome = None if order is None else self._execute_fresh(order, executor)
            if outcome is not None:
                return outcome
        attempt = self._claim(order_id, executor)
        if attempt is None:
            return Outcome.SKIPPED
        try:
            if attempt.order.tx_hash:
                # Whatever already reached the chain is settled first: never fail (or send
                # anew for) an order whose transaction may still land.
                settled = self._settle_outstanding(attempt)
                if settled is not None:
                    return settled
            elif attempt.taken_over:
                self._check_delivery_budget(attempt)
                raise ExecutorLost("the executor stopped before building a transaction")
            self._check_delivery_budget(attempt)
            return self._run(attempt)
        except LeaseLost as lost:
            log.warning("%s; stopping without side effects", lost)
            return Outcome.LEASE_LOST
        except ExecutionError as error:
            return self._fail_attempt(attempt, error)

    def _execute_fresh(self, order: Order, executor: str) -> Outcome | None:
        """Route, build and claim-with-`routing` a fresh order, then go on as usual; None if it
        was not claimed here (nothing was written)."""
        attempt: Attempt | None = None
        try:
            # Its `pending` is timed by the claim (_advance_many): one not claimed here is
            # claimed the usual way, or by someone else, who time it.
            attempt = self._attempt(order, executor, Entry.FRESH)
            return self._run(attempt)
        except NotClaimed:
            log.info("order %s: not fresh; claiming it the usual way", order.id)
            return None
        except LeaseLost as lost:
            log.warning("%s; stopping without side effects", lost)
            return Outcome.LEASE_LOST
        except ExecutionError as error:
            if attempt is None or attempt.entry is Entry.FRESH:
                return None  # the usual way claims it and meets (or records) this again
            return self._fail_attempt(attempt, error)

    # -- the happy path -------------------------------------------------------------------

    def _claim(self, order_id: uuid.UUID, executor: str) -> Attempt | None:
        lease_s = self.settings.order_lease_s
        with unit_of_work(self.session):  # a claim, else a take-over: each atomic alone
            order = self.orders.claim(order_id, executor, lease_s)
            entry = Entry.CLAIMED
            if order is None:
                order = self.orders.take_over(order_id, executor, lease_s)
                entry = Entry.TAKEN_OVER
            if order is None:
                log.info(
                    "order %s: not runnable by %s (claimed, done or unknown)", order_id, executor
                )
                return None
        return self._attempt(order, executor, entry)

    def _attempt(self, order: Order, executor: str, entry: Entry) -> Attempt:
        """An attempt at `order` as its claim (or take-over) returned it, or as intake's copy
        says it is (FRESH)."""
        logs.bind(order_id=order.id, attempt=order.attempts)
        status = OrderStatus(order.status)
        clock = metrics.StatusClock()
        claimed = entry is Entry.CLAIMED
        if status is OrderStatus.ROUTING and claimed and order.triggered_at is not None:
            # Routed by the trigger engine: its time in `routing` runs from the trigger.
            clock.since -= max((datetime.now(UTC) - order.triggered_at).total_seconds(), 0.0)
        elif claimed:
            _observe_pending(order)
        # A sniper's token_out is a mint the registry does not list: its decimals are read
        # from the chain (once per process).
        token_in, token_out = (
            token_for(self.chain, order.token_in),
            token_for(self.chain, order.token_out),
        )
        return Attempt(
            order,
            executor,
            token_in,
            token_out,
            token_in.to_atoms(order.amount_in),
            status,
            entry,
            order.tx_last_valid_height,
            clock=clock,
        )

    def _run(self, attempt: Attempt) -> Outcome:
        """Route, build, send and settle. A FRESH attempt's order is not claimed yet: the
        transition to `routing` claims it (NotClaimed, with nothing written, if it cannot)."""
        order = attempt.order
        decision = self.router.route(attempt.token_in, attempt.token_out, attempt.amount_in)
        floor = amounts.price_floor(order, attempt.token_out)
        if decision.amount_out < floor and attempt.status in _UNBUILT:
            # The market moved back between the trigger and this quote: wait again rather
            # than send a swap the limit would make the chain refuse.
            return self._rearm(attempt, decision.amount_out, floor)
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
        while True:
            built = self._build(attempt, decision, route, minimum, memo)
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
        attempt.expires_at = time.monotonic() + _slots(built.slots_left).total_seconds()
        return self._send_and_settle(
            attempt, built.encoded, built.signature, decision.dex, decision.amount_out
        )

    def _build(
        self,
        attempt: Attempt,
        decision: RouteDecision,
        route: dict[str, Any],
        minimum: int,
        memo: str,
    ) -> _Built:
        """Sign the swap of `decision` on the newest blockhash, with its `building` event and
        the order's columns to record with it."""
        order = attempt.order
        blockhash = self.chain.latest_blockhash()
        tx = build_swap(
            wallet=self.wallet,
            token_in=attempt.token_in,
            token_out=attempt.token_out,
            amount_in=attempt.amount_in,
            decision=decision,
            minimum=minimum,
            blockhash=blockhash.value,
            memo=memo,
            compute_unit_price=self.settings.compute_unit_price_micro_lamports,
        )
        signature = transactions.signature_of(tx)
        encoded = transactions.encode_transaction(tx)
        slots_left = blockhash.last_valid_block_height - blockhash.slot + 1
        event = event_data.building(
            dex=decision.dex,
            legs=route["legs"],
            token_out=attempt.token_out,
            quoted=decision.amount_out,
            minimum=minimum,
            slippage_bps=order.slippage_bps,
            signature=signature,
            blockhash=blockhash.value,
            last_valid_block_height=blockhash.last_valid_block_height,
            expires_at=self.now() + _slots(slots_left),
            compute_unit_limit=COMPUTE_UNIT_LIMIT_PER_LEG * len(decision.legs),
            compute_unit_price=self.settings.compute_unit_price_micro_lamports,
        )
        values = {
            "min_amount_out": attempt.token_out.from_atoms(minimum),
            "tx_hash": signature,
            "signed_tx": encoded,
            "tx_last_valid_height": blockhash.last_valid_block_height,
            # A stalled executor that lost its lease must not send: the lease is renewed in
            # this same transition, right before the send.
            "lease_until": lease_expiry(self.settings.order_lease_s),
        }
        return _Built(blockhash, signature, encoded, slots_left, event, values)

    def _record_build(
        self,
        attempt: Attempt,
        routing_event: dict[str, Any],
        routed: dict[str, Any],
        built: _Built,
    ) -> None:
        if attempt.status is OrderStatus.ROUTING:
            # Routed by the trigger engine (its event holds that decision); the route built is
            # this fresher one, which the `building` event and the order's columns record.
            self._advance(attempt, OrderStatus.BUILDING, built.event, routed | built.values)
        else:
            # Routing and building are one unit of work: quoting and signing are local and
            # take a millisecond, so both transitions (and their events) are one statement.
            self._advance_many(
                attempt,
                [
                    Step(OrderStatus.ROUTING, routing_event, routed),
                    Step(OrderStatus.BUILDING, built.event, built.values),
                ],
            )

    def _send_and_settle(
        self, attempt: Attempt, encoded: str, signature: str, dex: str, quoted: int
    ) -> Outcome:
        self.chain.send_transaction(encoded)
        if attempt.status is OrderStatus.BUILDING:
            self._advance(attempt, OrderStatus.SUBMITTED, {"dex": dex, "txHash": signature}, {})
        return self._settle(attempt, dex, quoted, self._confirmation(attempt, signature, encoded))

    def _confirmation(self, attempt: Attempt, signature: str, encoded: str) -> SignatureStatus:
        """Wait for the transaction's confirmation, at most until its blockhash has expired
        (then it can never land) or CONFIRM_TIMEOUT_S, whichever comes first.

        Meanwhile the same signed bytes are sent again every REBROADCAST_INTERVAL_S: a leader
        may never have received them, and the engine sends with `maxRetries: 0`, so nobody
        else re-sends them (research/dex.md: nodes re-broadcast every 2 s by themselves
        otherwise; "maxRetries 0 + own rebroadcast loop is the common pro pattern"). One
        signature lands at most once, however often it is sent.
        """
        last_valid = attempt.last_valid_height
        timeout_s = float(self.settings.confirm_timeout_s)
        if attempt.expires_at is not None:  # built in this attempt: no need to ask the chain
            timeout_s = min(timeout_s, max(attempt.expires_at - time.monotonic(), 0.0) + 1.0)
        elif last_valid is not None:
            remaining = _slots(last_valid - self.chain.block_height() + 1).total_seconds()
            timeout_s = min(timeout_s, max(remaining, 0.0) + 1.0)
        every_s = float(self.settings.rebroadcast_interval_s) or timeout_s
        deadline, waited_s = time.monotonic() + timeout_s, 0.0
        while True:
            chunk_s = max(min(every_s, timeout_s - waited_s), 0.0)
            status = self.chain.wait_for_status(signature, chunk_s)
            if status is not None:
                return status
            waited_s += chunk_s
            if waited_s >= timeout_s or time.monotonic() >= deadline:
                break
            if not self._resend(attempt, encoded):
                break
        height = self.chain.block_height()
        if last_valid is None or height > last_valid:
            raise BlockhashExpired(f"{signature} was not included before its blockhash expired")
        raise TransactionUnconfirmed(
            f"{signature} not confirmed within {timeout_s:.0f}s",
            retry_after_s=_slots(last_valid - height + 2).total_seconds(),
        )

    def _resend(self, attempt: Attempt, encoded: str) -> bool:
        """Send the same signed bytes again; False once the node says their blockhash has
        expired (they can never land). An unreachable node is asked again next time."""
        try:
            self.chain.send_transaction(encoded)
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
            waiting_for=waiting_for(
                order.type, order.token_out, order.limit_price, order.max_price
            ),
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
        events = self.committer.commit(
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
        self.publisher.publish(event_payload(events[0]))
        log.info("order %s: quote %s below its floor %s; waiting again", order.id, quoted, floor)
        return Outcome.REARMED

    def _settle(self, attempt: Attempt, dex: str, quoted: int, status: SignatureStatus) -> Outcome:
        """Record the outcome of a transaction the chain has confirmed."""
        if not status.succeeded:
            # It landed, but a program refused the swap (and the chain charged the fee).
            raise program_error(status.err)
        balances = status.balances or self.chain.transaction_balances(status.signature)
        if balances is None:
            raise RpcUnavailable(f"the node has no record of confirmed {status.signature} yet")
        token_in, token_out = attempt.token_in, attempt.token_out
        received = balances.received(
            str(self.wallet.pubkey()), token_out.mint, native=token_out.mint == WSOL_MINT
        )
        fill = amounts.Fill.of(token_in, token_out, attempt.amount_in, received, quoted)
        self._advance(
            attempt,
            OrderStatus.CONFIRMED,
            event_data.confirmed(
                dex=dex,
                signature=status.signature,
                slot=status.slot,
                fill=fill,
                token_out=token_out,
                quoted=quoted,
            ),
            {
                "amount_out": fill.amount_out,
                "executed_price": fill.price,
                "lease_owner": None,
                "lease_until": None,
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

    # -- what is already on its way ---------------------------------------------------------

    def _settle_outstanding(self, attempt: Attempt) -> Outcome | None:
        """Settle the order's latest transaction; None when a new one may be built.

        Landed → walk the lifecycle to `confirmed`. Failed on chain → a fresh attempt builds
        anew (a take-over records that attempt's failure instead). Unknown with a valid
        blockhash → re-broadcast the same signed bytes. Unknown after expiry → it can never
        land: a fresh attempt builds anew (a take-over fails that attempt, retryably).
        """
        order = attempt.order
        signature = order.tx_hash or ""
        status = self.chain.signature_statuses([signature]).get(signature)
        if status is None:
            if self._may_still_land(attempt):
                if not order.signed_tx:  # recorded before signed bytes were kept: wait it out
                    return self._park(attempt)
                return self._rebroadcast(attempt)
            if attempt.taken_over:
                self._check_delivery_budget(attempt)
                raise ExecutorLost(f"{signature} never reached the chain and can no longer land")
            return None
        if not status.is_confirmed:
            status = self.chain.wait_for_status(signature, self.settings.confirm_timeout_s)
            if status is None:
                raise TransactionUnconfirmed(f"{signature} is processed but not yet confirmed")
        if status.succeeded:
            log.warning("order %s: %s landed; recording it", order.id, signature)
            data = {"recovered": True, "txHash": signature, "dex": order.dex}
            self._walk_to(attempt, OrderStatus.SUBMITTED, data)
            return self._settle(attempt, order.dex or "", self._quoted_atoms(attempt), status)
        if attempt.taken_over:
            raise program_error(status.err)
        return None

    def _may_still_land(self, attempt: Attempt) -> bool:
        last_valid = attempt.last_valid_height
        return last_valid is not None and self.chain.block_height() <= last_valid

    def _rebroadcast(self, attempt: Attempt) -> Outcome:
        """Send the same signed transaction again: it lands at most once, whoever sent it."""
        order = attempt.order
        if order.deliveries > self.settings.order_max_deliveries:
            return self._park(attempt)
        data = {"rebroadcast": True, "txHash": order.tx_hash, "dex": order.dex}
        self._walk_to(attempt, OrderStatus.BUILDING, data, renew_lease=True)
        log.info("order %s: re-broadcasting %s", order.id, order.tx_hash)
        return self._send_and_settle(
            attempt,
            order.signed_tx or "",
            order.tx_hash or "",
            order.dex or "",
            self._quoted_atoms(attempt),
        )

    def _park(self, attempt: Attempt) -> Outcome:
        """An order whose last transaction may still land but must not be sent again (a
        poison order whose deliveries keep dying): send nothing, and hold its lease until that
        transaction's blockhash has expired, when the reconciler's next delivery settles it."""
        order = attempt.order
        remaining_slots = (attempt.last_valid_height or 0) - self.chain.block_height() + 2
        hold_s = max(1, int(_slots(remaining_slots).total_seconds()) + 1)
        with unit_of_work(self.session):
            self.orders.renew_lease(order.id, attempt.executor, hold_s)
        log.warning("order %s: %d deliveries; parked for %ss", order.id, order.deliveries, hold_s)
        return Outcome.PARKED

    def _walk_to(
        self,
        attempt: Attempt,
        target: OrderStatus,
        data: dict[str, Any],
        *,
        renew_lease: bool = False,
    ) -> None:
        """Advance along the happy path from where the order is up to `target`; with
        `renew_lease`, the lease is extended by the last step (or on its own if none)."""
        start, end = HAPPY_PATH.index(attempt.status), HAPPY_PATH.index(target)
        steps = HAPPY_PATH[start + 1 : end + 1]
        for status in steps:
            values: dict[str, Any] = {}
            if renew_lease and status is target:
                values["lease_until"] = lease_expiry(self.settings.order_lease_s)
            self._advance(attempt, status, data, values)
        if renew_lease and not steps:
            self._renew_lease(attempt)

    def _check_delivery_budget(self, attempt: Attempt) -> None:
        """A poison order keeps dying with its worker: stop it so the queue keeps flowing.

        Only called once nothing of the order can still land."""
        if attempt.order.deliveries > self.settings.order_max_deliveries:
            raise DeliveriesExhausted(
                f"handed to a worker {attempt.order.deliveries} times without finishing"
            )

    def _renew_lease(self, attempt: Attempt) -> None:
        with unit_of_work(self.session):
            if not self.orders.renew_lease(
                attempt.order.id, attempt.executor, self.settings.order_lease_s
            ):
                raise LeaseLost(f"order {attempt.order.id}: lease lost before sending")

    def _quoted_atoms(self, attempt: Attempt) -> int:
        quoted = attempt.order.quoted_amount_out
        return attempt.token_out.to_atoms(quoted) if quoted is not None else 0

    def _advance(
        self,
        attempt: Attempt,
        new: OrderStatus,
        data: dict[str, Any],
        values: dict[str, Any],
        *,
        expected: Iterable[OrderStatus] | None = None,
    ) -> None:
        self._advance_many(attempt, [Step(new, data, values)], expected=expected)

    def _advance_many(
        self,
        attempt: Attempt,
        steps: list[Step],
        *,
        expected: Iterable[OrderStatus] | None = None,
    ) -> None:
        """Commit consecutive transitions of an order we hold the lease of in one statement
        (`TransitionCommitter.commit`), then publish their events in one round trip;
        LeaseLost (nothing committed) if the lease is no longer ours. The first step starts
        from the status this attempt moved the order to, or from any of `expected` (a
        failure, from wherever it happened). A FRESH attempt's first step also claims the
        order, which must be fresh (NotClaimed, nothing committed, if it is not)."""
        claiming = attempt.entry is Entry.FRESH
        events = self.committer.commit(
            Transition.of(
                attempt.order.id,
                tuple(expected) if expected is not None else attempt.status,
                steps,
                lease_owner=attempt.executor,
                claim_lease_s=self.settings.order_lease_s if claiming else None,
            )
        )
        if events is None and claiming:
            raise NotClaimed(f"order {attempt.order.id} is not fresh")
        if events is None:
            raise LeaseLost(f"order {attempt.order.id}: lost the lease before {steps[0].status}")
        payloads = [event_payload(event) for event in events]
        if claiming:
            _observe_pending(attempt.order)
            attempt.entry = Entry.CLAIMED
        previous = attempt.status
        for step in steps:
            # `pending` was timed when the order was claimed.
            if previous is not OrderStatus.PENDING:
                attempt.clock.left(previous)
            previous = step.status
        attempt.status = previous
        self.publisher.publish_many(payloads)

    # -- failures -------------------------------------------------------------------------

    def _fail_attempt(self, attempt: Attempt, error: ExecutionError) -> Outcome:
        order = attempt.order
        has_attempts_left = order.attempts < self.settings.order_max_attempts
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
        data = event_data.failed(final=final, last=error, attempts=order.attempts)
        values = {
            "failure_code": final.code,
            "failure_reason": final.message,
            "failure_retryable": final.retryable,
            "lease_owner": None,
            "lease_until": None,
        }
        try:
            self._advance(attempt, OrderStatus.FAILED, data, values, expected=IN_FLIGHT)
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
        least the minimum the client accepted (research/dex.md §6.8). None otherwise.

        A limit or sniper order accepted a price, not the quote that missed: it is tried again
        while it has attempts, and its next attempt waits again if the market is now below its
        limit (`_run`), so a stale quote never fails an order whose limit still holds.
        """
        floor = amounts.price_floor(attempt.order, attempt.token_out)
        if floor:
            minimum = decimal_text(attempt.token_out.from_atoms(floor))
            return {"requote": {"clientMinimum": minimum, "limitHolds": True}}
        with unit_of_work(self.session):
            order = self.orders.get(attempt.order.id)  # the minimum set while building
        route = (order.route if order else None) or {}
        if order is None or route.get("requoted") or order.min_amount_out is None:
            return None
        try:
            decision = self.router.route(attempt.token_in, attempt.token_out, attempt.amount_in)
        except ExecutionError:
            return None
        client_minimum = attempt.token_out.to_atoms(order.min_amount_out)
        if decision.amount_out < client_minimum:
            return None
        return {
            "requote": {
                "dex": decision.dex,
                "amountOut": decimal_text(attempt.token_out.from_atoms(decision.amount_out)),
                "clientMinimum": str(order.min_amount_out),
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
            seed = f"{self.settings.dex_seed}:backoff:{order.id}:{order.attempts}"
            countdown_s = retry_countdown(self.settings, error, seed, order.attempts)
        next_at = self.now() + timedelta(seconds=countdown_s)
        data = event_data.retry_scheduled(
            error=error,
            countdown_s=countdown_s,
            next_attempt_at=next_at,
            attempts_left=self.settings.order_max_attempts - order.attempts,
            extra=extra,
        )
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "next_attempt_at": next_at,
        }
        if "requote" in extra:
            values["route"] = {**(order.route or {}), "requoted": True}
        try:
            self._advance(attempt, OrderStatus.PENDING, data, values, expected=IN_FLIGHT)
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


def _observe_pending(order: Order) -> None:
    """How long the order waited for a worker since it became runnable: its acceptance (or
    its trigger, for a limit or sniper order) on the first attempt, the scheduled time of the
    retry on later ones."""
    runnable_since = (
        order.next_attempt_at
        if order.attempts > 1 and order.next_attempt_at is not None
        else (order.triggered_at or order.created_at)
    )
    if runnable_since is not None:
        metrics.time_in_status("pending", (datetime.now(UTC) - runnable_since).total_seconds())


def _slots(count: int) -> timedelta:
    """How long `count` slots last (Solana's 400 ms target slot time)."""
    return timedelta(seconds=count * SLOT_S)


def execution_service() -> ExecutionService:
    """The service for the current app context (a task), on this process's chain resources."""
    from flask import current_app

    from order_engine.infra.db import get_session
    from order_engine.services.resources import chain_resources

    settings: Settings = current_app.config["SETTINGS"]
    chain = chain_resources(settings)
    return ExecutionService(
        get_session(), chain.router, chain.chain, chain.wallet, app_publisher(), settings
    )
