"""Execute one order: claim it, route, build, send, confirm — or retry, or fail.

Every step is a compare-and-set transition committed on its own (never holding a transaction
across a venue call), followed by a publish of its event. The worker holds a lease on the order
while it runs; a transition only applies while that lease is ours, so a duplicate delivery or a
second worker that took over an expired lease can never move the order twice.

Retries: a retryable failure with attempts left puts the order back to `pending` (with the
error and when the next attempt runs) and raises `RetryLater`, which the Celery task turns into
a retry with that countdown. The database counts attempts; the last one ends in `failed`, once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from order_engine._oldchain import (
    SimulatedChain,
    SwapLeg,
    SwapTransaction,
    TransactionStatus,
    blockhash_expires_at_ms,
    signature_for,
)
from order_engine.config import Settings
from order_engine.db import get_engine, get_session
from order_engine.events import EventPublisher, Publisher, event_payload, format_timestamp
from order_engine.models import Order, OrderStatus
from order_engine.redis_client import get_redis
from order_engine.repositories.order import IN_FLIGHT, OrderRepository
from order_engine.routing import RouteDecision, Router
from order_engine.tokens import Token, resolve
from order_engine.venues import catalogue
from order_engine.venues.clock import WallClock
from order_engine.venues.errors import (
    AmountTooSmall,
    AttemptsExhausted,
    BlockhashExpired,
    DeliveriesExhausted,
    ExecutionError,
    ExecutorLost,
    NoLiquidity,
    SlippageExceeded,
    TransactionDropped,
)
from order_engine.venues.simulated import PoolStore, SimulatedVenue

log = logging.getLogger(__name__)

BPS = 10_000
COMPUTE_UNIT_LIMIT = 200_000
COMPUTE_UNIT_PRICE_MICRO_LAMPORTS = 25_000


_PROGRAM_ERRORS: dict[str, type[ExecutionError]] = {
    SlippageExceeded.code: SlippageExceeded,
    NoLiquidity.code: NoLiquidity,
    AmountTooSmall.code: AmountTooSmall,
}


class RetryLater(Exception):
    """The attempt failed in a retryable way; run the next one after `countdown_s`."""

    def __init__(self, error: ExecutionError, countdown_s: float) -> None:
        super().__init__(f"{error.code}: {error.message}; next attempt in {countdown_s:.2f}s")
        self.error = error
        self.countdown_s = countdown_s


class LeaseLost(ExecutionError):
    """Another executor owns the order now; this one must stop without side effects."""

    code, retryable = "LEASE_LOST", False


@dataclass
class Attempt:
    order: Order
    executor: str
    token_in: Token
    token_out: Token
    amount_in: int
    recovering: bool = False


def min_amount_out(quoted_out: int, slippage_bps: int) -> int:
    """floor(quotedOut × (10000 − slippageBps) / 10000), the least the swap may pay out."""
    return quoted_out * (BPS - slippage_bps) // BPS


def backoff_seconds(settings: Settings, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, never zero-ish.

    Full jitter can draw a 0 s retry (research/reliability.md §1.4), which hammers a venue that
    is down; keeping half of the delay fixed avoids that while still spreading retries.
    """
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def new_executor_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class ExecutionService:
    def __init__(
        self,
        session: Session,
        router: Router,
        chain: SimulatedChain,
        publisher: Publisher,
        settings: Settings,
    ) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.router = router
        self.chain = chain
        self.publisher = publisher
        self.settings = settings

    @classmethod
    def from_app(cls) -> ExecutionService:
        settings: Settings = current_app.config["SETTINGS"]
        router, chain = _venues_and_chain(settings)
        publisher = EventPublisher(get_redis(), settings.active_order_ttl_s)
        return cls(get_session(), router, chain, publisher, settings)

    def execute(self, order_id: uuid.UUID, executor: str) -> str:
        """Run one attempt of the order if it is ours to run; return what happened."""
        attempt = self._claim(order_id, executor)
        if attempt is None:
            return "skipped"
        try:
            # Whatever already reached the chain is settled first: never fail (or re-send) an
            # order whose transaction may have landed.
            if attempt.recovering:
                return self._recover(attempt)
            landed = self._earlier_landing(attempt)
            if landed is not None:
                return self._finish_landed(attempt, landed)
            self._check_delivery_budget(attempt)
            return self._run(attempt)
        except LeaseLost as lost:
            log.warning("%s; stopping without side effects", lost)
            return "lease-lost"
        except ExecutionError as error:
            return self._fail_attempt(attempt, error)

    # -- the happy path -------------------------------------------------------------------

    def _claim(self, order_id: uuid.UUID, executor: str) -> Attempt | None:
        lease_s = self.settings.order_lease_s
        with self.session.begin():
            order = self.orders.claim(order_id, executor, lease_s)
            recovering = False
            if order is None:
                order = self.orders.take_over(order_id, executor, lease_s)
                recovering = order is not None
            if order is None:
                log.info(
                    "order %s: not runnable by %s (claimed, done or unknown)", order_id, executor
                )
                return None
        token_in, token_out = resolve(order.token_in), resolve(order.token_out)
        return Attempt(
            order, executor, token_in, token_out, token_in.to_atoms(order.amount_in), recovering
        )

    def _run(self, attempt: Attempt) -> str:
        order = attempt.order
        decision = self.router.route(attempt.token_in, attempt.token_out, attempt.amount_in)
        route = decision.as_event()["decision"]
        if (order.route or {}).get("requoted"):
            route["requoted"] = True  # at most one re-quote per order, across attempts
        self._advance(
            attempt,
            OrderStatus.PENDING,
            OrderStatus.ROUTING,
            decision.as_event(),
            {
                "dex": decision.dex,
                "route": route,
                "quoted_amount_out": attempt.token_out.from_atoms(decision.amount_out),
            },
        )
        tx = self._build(attempt, decision)
        self._advance(
            attempt,
            OrderStatus.ROUTING,
            OrderStatus.BUILDING,
            {
                "dex": decision.dex,
                "legs": route["legs"],
                "quotedAmountOut": str(attempt.token_out.from_atoms(decision.amount_out)),
                "minAmountOut": str(attempt.token_out.from_atoms(tx.min_amount_out)),
                "slippageBps": order.slippage_bps,
                "txHash": tx.signature,
                "blockhash": tx.blockhash.value,
                "lastValidBlockHeight": tx.blockhash.last_valid_block_height,
                "blockhashExpiresAt": format_timestamp(
                    datetime.fromtimestamp(blockhash_expires_at_ms(tx.blockhash) / 1000, UTC)
                ),
                "computeUnitLimit": tx.compute_unit_limit,
                "computeUnitPriceMicroLamports": tx.compute_unit_price_micro_lamports,
            },
            {
                "min_amount_out": attempt.token_out.from_atoms(tx.min_amount_out),
                "tx_hash": tx.signature,
            },
        )
        # A stalled executor that lost its lease must not send: renew it right before.
        self._renew_lease(attempt)
        self.chain.send_transaction(tx)
        self._advance(
            attempt,
            OrderStatus.BUILDING,
            OrderStatus.SUBMITTED,
            {"dex": decision.dex, "txHash": tx.signature},
            {},
        )
        timeout_s = self.settings.dex_swap_latency.high_ms / 1000 + 10
        status = self.chain.confirm_transaction(tx.signature, timeout_s)
        return self._settle(attempt, decision.dex, decision.amount_out, status)

    def _build(self, attempt: Attempt, decision: RouteDecision) -> SwapTransaction:
        legs = []
        for leg in decision.legs:
            listed = catalogue.pool_for(leg.dex, attempt.token_in, attempt.token_out)
            assert listed is not None  # the venue just quoted this pair
            legs.append(SwapLeg(leg.pool_id, listed[1], leg.amount_in))
        return SwapTransaction(
            signature=signature_for(
                self.settings.dex_seed, str(attempt.order.id), attempt.order.attempts
            ),
            memo=attempt.order.client_order_id or str(attempt.order.id),
            legs=tuple(legs),
            min_amount_out=self._minimum_out(attempt, decision),
            blockhash=self.chain.latest_blockhash(),
            compute_unit_limit=COMPUTE_UNIT_LIMIT * len(legs),
            compute_unit_price_micro_lamports=COMPUTE_UNIT_PRICE_MICRO_LAMPORTS,
        )

    def _minimum_out(self, attempt: Attempt, decision: RouteDecision) -> int:
        """The least the swap may pay: from this quote, but never below what the client was
        promised before a slippage re-quote."""
        minimum = min_amount_out(decision.amount_out, attempt.order.slippage_bps)
        order = attempt.order
        if (order.route or {}).get("requoted") and order.min_amount_out is not None:
            minimum = max(minimum, attempt.token_out.to_atoms(order.min_amount_out))
        return minimum

    def _settle(self, attempt: Attempt, dex: str, quoted: int, status: TransactionStatus) -> str:
        """Record the outcome of the attempt's transaction, which the chain has processed."""
        if status.status == "failed":
            # The transaction landed but its program refused the swap: map the program error.
            error_class = _PROGRAM_ERRORS.get(status.error_code or "", TransactionDropped)
            raise error_class(status.error_message or f"swap failed: {status.error_code}")
        if status.status == "expired":
            raise BlockhashExpired(status.error_message or "blockhash expired")
        if status.status != "landed":
            raise TransactionDropped(status.error_message or f"transaction {status.status}")
        token_in, token_out = attempt.token_in, attempt.token_out
        amount_out = token_out.from_atoms(status.amount_out)
        price = (amount_out / token_in.from_atoms(status.amount_in)).quantize(
            Decimal("1e-12"), rounding=ROUND_DOWN
        )
        slippage = Decimal((quoted - status.amount_out) * BPS) / Decimal(max(quoted, 1))
        self._advance(
            attempt,
            OrderStatus.SUBMITTED,
            OrderStatus.CONFIRMED,
            {
                "dex": dex,
                "txHash": status.signature,
                "slot": status.slot,
                "amountIn": str(token_in.from_atoms(status.amount_in)),
                "amountOut": str(amount_out),
                "executedPrice": str(price.normalize()),
                "quotedAmountOut": str(token_out.from_atoms(quoted)),
                "realisedSlippageBps": str(slippage.quantize(Decimal("0.01"))),
            },
            {
                "amount_out": amount_out,
                "executed_price": price,
                "lease_owner": None,
                "lease_until": None,
            },
        )
        log.info(
            "order %s confirmed on %s: %s %s -> %s %s (%s)",
            attempt.order.id,
            dex,
            token_in.from_atoms(status.amount_in),
            token_in.symbol,
            amount_out,
            token_out.symbol,
            status.signature,
        )
        return "confirmed"

    # -- recovery -------------------------------------------------------------------------

    def _recover(self, attempt: Attempt) -> str:
        """Finish an attempt whose executor died, from what the chain knows of its signature.

        Never sends anything: a transaction already sent either landed (record it), is still
        on its way (wait for it), or never reached the chain (a retryable failure).
        """
        order = attempt.order
        status = OrderStatus(order.status)
        if status is OrderStatus.ROUTING or not order.tx_hash:
            self._check_delivery_budget(attempt)
            raise ExecutorLost("the executor stopped before sending anything")
        known = self._status_once_settled(attempt, order.tx_hash)
        if known is None:
            self._check_delivery_budget(attempt)
            raise ExecutorLost("the executor's transaction never reached the chain")
        log.info(
            "order %s: recovering %s transaction %s (%s)",
            order.id,
            status.value,
            order.tx_hash,
            known.status,
        )
        if status is OrderStatus.BUILDING:
            self._advance(
                attempt,
                OrderStatus.BUILDING,
                OrderStatus.SUBMITTED,
                {"dex": order.dex, "txHash": order.tx_hash, "recovered": True},
                {},
            )
        if not known.is_final:
            timeout_s = self.settings.dex_swap_latency.high_ms / 1000 + 10
            known = self.chain.confirm_transaction(order.tx_hash, timeout_s)
        return self._settle(attempt, order.dex or "", self._quoted_atoms(attempt), known)

    def _earlier_landing(self, attempt: Attempt) -> TransactionStatus | None:
        """A transaction of an earlier attempt that landed after all, if any.

        Never send a new transaction while an old one for the same order can still land
        (research/dex.md §3.5): an earlier transaction still in flight is waited for, and one
        the chain has not seen is waited out until its blockhash expires.
        """
        order = attempt.order
        if order.attempts <= 1:
            return None
        earlier = [
            signature_for(self.settings.dex_seed, str(order.id), n)
            for n in range(1, order.attempts)
        ]
        for signature in earlier:
            status = self._status_once_settled(attempt, signature)
            if status is not None and status.status == "landed":
                return status
        return None

    def _status_once_settled(self, attempt: Attempt, signature: str) -> TransactionStatus | None:
        """The final status of a signature, or None once it can no longer land.

        A signature the chain does not know may still arrive from a sender that is stalled
        rather than dead, until the blockhash it was built with expires; so wait that out.
        """
        known = self.chain.signature_statuses([signature]).get(signature)
        if known is None:
            last_valid = self._last_valid_height(attempt, signature)
            if last_valid is None:
                return None  # that attempt never built a transaction
            self.chain.wait_until_expired(last_valid)
            self._renew_lease(attempt)
            known = self.chain.signature_statuses([signature]).get(signature)
            if known is None:
                return None
        if not known.is_final:
            timeout_s = self.settings.dex_swap_latency.high_ms / 1000 + 10
            known = self.chain.confirm_transaction(signature, timeout_s)
        return known

    def _last_valid_height(self, attempt: Attempt, signature: str) -> int | None:
        with self.session.begin():
            return self.orders.last_valid_block_height(attempt.order.id, signature)

    def _check_delivery_budget(self, attempt: Attempt) -> None:
        """A poison order keeps dying with its worker: stop it so the queue keeps flowing.

        Only called once nothing of the order can still land (see `execute`)."""
        if attempt.order.deliveries > self.settings.order_max_deliveries:
            raise DeliveriesExhausted(
                f"handed to a worker {attempt.order.deliveries} times without finishing"
            )

    def _renew_lease(self, attempt: Attempt) -> None:
        with self.session.begin():
            if not self.orders.renew_lease(
                attempt.order.id, attempt.executor, self.settings.order_lease_s
            ):
                raise LeaseLost(f"order {attempt.order.id}: lease lost before sending")

    def _finish_landed(self, attempt: Attempt, landed: TransactionStatus) -> str:
        """Walk the lifecycle forward to `confirmed` for a transaction found already landed."""
        log.warning(
            "order %s: earlier transaction %s landed; recording it instead of sending",
            attempt.order.id,
            landed.signature,
        )
        data = {"recovered": True, "txHash": landed.signature, "dex": attempt.order.dex}
        self._advance(attempt, OrderStatus.PENDING, OrderStatus.ROUTING, data, {})
        self._advance(
            attempt, OrderStatus.ROUTING, OrderStatus.BUILDING, data, {"tx_hash": landed.signature}
        )
        self._advance(attempt, OrderStatus.BUILDING, OrderStatus.SUBMITTED, data, {})
        return self._settle(attempt, attempt.order.dex or "", self._quoted_atoms(attempt), landed)

    def _quoted_atoms(self, attempt: Attempt) -> int:
        quoted = attempt.order.quoted_amount_out
        return attempt.token_out.to_atoms(quoted) if quoted is not None else 0

    def _advance(
        self,
        attempt: Attempt,
        expected: OrderStatus,
        new: OrderStatus,
        data: dict[str, Any],
        values: dict[str, Any],
    ) -> None:
        if not self._record(attempt, expected, new, data, values):
            raise LeaseLost(f"order {attempt.order.id}: lost the lease before {new}")

    def _record(
        self,
        attempt: Attempt,
        expected: OrderStatus | tuple[OrderStatus, ...],
        new: OrderStatus,
        data: dict[str, Any],
        values: dict[str, Any],
    ) -> bool:
        """Commit one transition of an order we hold the lease of, then publish its event.

        False when the lease is no longer ours: another executor owns the order.
        """
        with self.session.begin():
            event = self.orders.transition(
                attempt.order.id,
                expected,
                new,
                event_data=data,
                lease_owner=attempt.executor,
                values=values,
            )
            if event is None:
                return False
            payload = event_payload(event)
        self.publisher.publish(payload)
        return True

    # -- failures -------------------------------------------------------------------------

    def _fail_attempt(self, attempt: Attempt, error: ExecutionError) -> str:
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
        data = {"error": {**error.as_dict(), "finalCode": final.code}, "attempts": order.attempts}
        values = {
            "failure_code": error.code,
            "failure_reason": final.message,
            "failure_retryable": error.retryable,
            "lease_owner": None,
            "lease_until": None,
        }
        if not self._record(attempt, IN_FLIGHT, OrderStatus.FAILED, data, values):
            log.warning("order %s: lease lost before recording failure %s", order.id, error.code)
            return "lease-lost"
        log.warning(
            "order %s failed after %s attempt(s): %s %s",
            order.id,
            order.attempts,
            error.code,
            error.message,
        )
        return "failed"

    def _requote_after_slippage(self, attempt: Attempt) -> dict[str, Any] | None:
        """One fresh quote after a slippage revert: worth a retry only if it still pays at
        least the minimum the client accepted (research/dex.md §6.8). None otherwise."""
        with self.session.begin():
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
                "amountOut": str(attempt.token_out.from_atoms(decision.amount_out)),
                "clientMinimum": str(order.min_amount_out),
            }
        }

    def _schedule_retry(
        self,
        attempt: Attempt,
        error: ExecutionError,
        extra: dict[str, Any],
        countdown_s: float | None = None,
    ) -> str:
        order = attempt.order
        if countdown_s is None:
            rng = random.Random(f"{self.settings.dex_seed}:backoff:{order.id}:{order.attempts}")
            countdown_s = backoff_seconds(self.settings, order.attempts, rng)
        next_at = datetime.now(UTC) + timedelta(seconds=countdown_s)
        data = {
            "error": error.as_dict(),
            "retryInMs": round(countdown_s * 1000),
            "nextAttemptAt": format_timestamp(next_at),
            "attemptsLeft": self.settings.order_max_attempts - order.attempts,
            **extra,
        }
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "next_attempt_at": next_at,
        }
        if "requote" in extra:
            values["route"] = {**(order.route or {}), "requoted": True}
        if not self._record(attempt, IN_FLIGHT, OrderStatus.PENDING, data, values):
            return "lease-lost"
        log.info(
            "order %s attempt %s failed (%s); retry in %.2fs",
            order.id,
            order.attempts,
            error.code,
            countdown_s,
        )
        raise RetryLater(error, countdown_s)


_wired: dict[tuple[str, int], tuple[Router, SimulatedChain]] = {}


def _venues_and_chain(settings: Settings) -> tuple[Router, SimulatedChain]:
    """One router and chain client per process (they hold no order state)."""
    key = (settings.database_url, settings.dex_seed)
    if key not in _wired:
        _wired[key] = build_venues_and_chain(settings, get_engine(), get_redis(), WallClock())
    return _wired[key]


def build_venues_and_chain(settings: Settings, engine, redis_client, clock, concurrent=True):
    store = PoolStore(engine, settings.dex_seed, clock)
    chain = SimulatedChain(engine, store, settings, redis_client, clock)
    venues = [SimulatedVenue(name, store, settings, clock) for name in catalogue.VENUES]
    return Router(venues, concurrent=concurrent), chain
