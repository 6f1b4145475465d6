"""Order intake and queries: the unit of work behind the REST and WebSocket endpoints.

`submit` commits the order row and its `pending` event together (one statement, or near the
account's cap one transaction), then (only after the commit) publishes the event and
queues the execution task. If queueing fails — the broker is down — the order is still safe
in PostgreSQL and the reconciler dispatches it later, so the client gets its 202 either way.
Both steps are bounded by their clients' timeouts, and a send to a broker that is the Redis
server that just failed to answer is skipped, so a frozen Redis delays the answer by one Redis
timeout, not several.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from order_engine.domain.time import format_timestamp
from order_engine.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    TooManyRequestsError,
    UnprocessableError,
)
from order_engine.infra import logs, metrics
from order_engine.infra.db import unit_of_work
from order_engine.live.events import EventPublisher, event_payload
from order_engine.models import DEFAULT_ACCOUNT_ID, Order, OrderEvent, OrderStatus, OrderType
from order_engine.repositories.intake import Intake, IntakeCommitter, IntakeRepository
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.twap import TwapRepository
from order_engine.services.submission_quotes import class_quote_now, quote_now
from order_engine.services.task_copy import task_copy
from order_engine.services.triggers.intake import ClassQuote, Quote, trigger_fields
from order_engine.services.twap import parent_fields
from order_engine.tasking import dispatch

log = logging.getLogger(__name__)
TRAILING = OrderType.TRAILING_STOP.value


@dataclass(frozen=True)
class SubmittedOrder:
    order: Order
    created: bool  # False when an Idempotency-Key replayed an earlier submission


@dataclass(frozen=True)
class OrderWithEvents:
    order: Order
    events: Sequence[OrderEvent]
    children: Sequence[Order] = ()  # a TWAP parent's, by slice


class OrderService:
    def __init__(
        self,
        session: Session,
        publisher: EventPublisher,
        quote: Quote | None = None,
        class_quote: ClassQuote | None = None,
        committer: IntakeCommitter | None = None,
    ) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.intake = IntakeRepository(session)
        # Intake's insert committed now, batched (the API's: `submit` needs it).
        self.committer = committer
        self.publisher = publisher
        # The engine's own quote (amount out, in atoms) for a limit, stop or bracket met at
        # submission, and a size class's quote for a trailing stop's starting peak.
        self.quote = quote or quote_now
        self.class_quote = class_quote or class_quote_now

    def submit(
        self,
        order_data: dict[str, Any],
        idempotency_key: str | None,
        account_id: uuid.UUID = DEFAULT_ACCOUNT_ID,
        max_in_flight: int | None = None,
        max_waiting: int | None = None,
    ) -> SubmittedOrder:
        """Create an order for `account_id` (or return the one it created earlier under the
        same key) and queue it. An order that waits for its trigger is counted against the
        account's waiting orders, any other against its orders in flight: with that cap (not
        0 or None), an account that already has that many gets a 429 instead (a replay of an
        earlier key still answers)."""
        fingerprint = _fingerprint(order_data)
        trigger, trigger_data = self._trigger_fields(order_data)
        fields = (order_data, idempotency_key, fingerprint, account_id, trigger, trigger_data)
        order, first = self._new_order(*fields)
        cap = (max_waiting if order.waiting else max_in_flight) or 0
        # Far from the cap, or with none, one statement counts (if there is a cap) and inserts,
        # committed at once and batched with concurrent requests' (`IntakeCommitter`): one
        # round trip, where BEGIN, the count, the insert and COMMIT took four. Within
        # IN_FLIGHT_SLACK of the cap, the locked path: the insert joins its unit of work.
        assert self.committer is not None, "submit needs the IntakeCommitter it inserts by"
        far = cap - IN_FLIGHT_SLACK if cap else None
        outcome = Intake.NEAR_CAP
        if far is None or far > 0:
            outcome = self._insert(self.committer, order, first, far)
        if outcome is Intake.NEAR_CAP:
            with self.session.begin():
                self._check_cap(account_id, order.waiting, cap, idempotency_key)
                order, first = self._new_order(*fields)  # its times from after the lock
                if self._insert(self.intake, order, first) is Intake.KEY_TAKEN:
                    return self._replay(idempotency_key, account_id, fingerprint)
        elif outcome is Intake.KEY_TAKEN:
            with unit_of_work(self.session):
                return self._replay(idempotency_key, account_id, fingerprint)
        metrics.order_submitted(order.type)
        logs.bind(order_id=order.id, attempt=order.attempts)
        published = self.publisher.publish(first, account_id)
        if order.type == OrderType.TWAP.value:
            self._schedule(order.id)  # its first slice is due now
        elif order.waiting:
            log.info("order %s waits for its trigger", order.id)  # the trigger engine sends it
        elif published or not dispatch.broker_is_app_redis():
            self._dispatch(order.id, task_copy(order))
        else:
            log.warning(
                "order %s accepted; Redis is not answering, the reconciler will queue it", order.id
            )
        return SubmittedOrder(order, True)

    def get(self, order_id: uuid.UUID, account_id: uuid.UUID | None = None) -> OrderWithEvents:
        """The order with its events; another account's order is "not found" (None: any)."""
        with self.session.begin():
            order = self.orders.get_owned(order_id, account_id)
            if order is None:
                raise NotFoundError(f"No order {order_id}.")
            self._load_peaks([order])
            children: Sequence[Order] = ()
            if order.type == OrderType.TWAP.value:
                children = TwapRepository(self.session).children(order_id)
            return OrderWithEvents(order, self.orders.events(order_id), children)

    def opening_history(
        self, order_id: uuid.UUID, after_seq: int = 0, account_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]] | None:
        """`history` for a stream that opens: from the order's live record in Redis when that
        is whole (an active order's usually is: a socket opened right after the submission
        costs no database read), else from PostgreSQL. None if there is no such order for
        `account_id`. Later re-reads (a gap, a quiet spell) go to PostgreSQL, the record of
        truth."""
        events = self.publisher.recorded_events(order_id, account_id)
        if events is None:
            return self.history(order_id, after_seq, account_id)
        return [event for event in events if event["seq"] > after_seq]

    def events_after(self, order_id: uuid.UUID, seq: int) -> list[dict[str, Any]]:
        return self.history(order_id, seq) or []

    def history(
        self, order_id: uuid.UUID, after_seq: int = 0, account_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]] | None:
        """The order's events after `after_seq`, in seq order; None if there is no such order
        (or `account_id` does not own it: another account's order does not exist for you).

        One prebuilt statement answers both questions (a stream used to ask "does it exist?"
        and then "what happened?" in two ORM queries, 16 % of the API's CPU per order), and
        the rows become payloads without ORM objects.
        """
        order_key = str(order_id)
        with unit_of_work(self.session):
            rows = self.intake.history(order_id, after_seq, account_id)
        if not rows:
            return None
        return [
            {
                "orderId": order_key,
                "seq": seq,
                "status": status,
                "at": format_timestamp(at),
                "attempt": attempt,
                "data": data,
            }
            for seq, status, at, attempt, data in rows
            if seq is not None
        ]

    def find(self, order_id: uuid.UUID, account_id: uuid.UUID | None = None) -> Order | None:
        """The order if `account_id` owns it (None: any account's)."""
        with self.session.begin():
            return self.orders.get_owned(order_id, account_id)

    def list(
        self, query: dict[str, Any], account_id: uuid.UUID | None = None
    ) -> tuple[Sequence[Order], str | None]:
        before = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        with self.session.begin():
            page = self.orders.page(
                limit=query["limit"],
                status=query.get("status", ()),
                order_type=query.get("type", ()),
                created_from=query.get("createdFrom"),
                created_to=query.get("createdTo"),
                before=before,
                account_id=account_id,
            )
            self._load_peaks(page.orders)
        cursor = _encode_cursor(*page.next_cursor) if page.next_cursor else None
        return page.orders, cursor

    def cancel(self, order_id: uuid.UUID, account_id: uuid.UUID | None = None) -> Order:
        """Cancel an order whose swap transaction has not been built.

        Cancel wins while the order is `pending` or `routing` and no transaction was ever built
        for it: the compare-and-set moves it to `cancelled`, the executor's next transition
        (to `building`) then matches nothing, and it stops without building or sending. Once
        a transaction exists (`building` onwards, or a retry whose earlier transaction may
        still land) nothing can call it back, so the answer is a 409 saying so.

        A TWAP parent's cancel, in the same transaction, cancels its children whose swap is
        not built; the others finish. The TWAP scheduler moves a parent by compare-and-set on
        `pending`, so it starts no slice once the cancel has committed, and the slices it
        committed first are cancelled here (this statement reads after the parent's lock).
        """
        with self.session.begin():
            if account_id is not None and self.orders.get_owned(order_id, account_id) is None:
                raise NotFoundError(f"No order {order_id}.")
            event = self.orders.transition(
                order_id,
                CANCELLABLE,
                OrderStatus.CANCELLED,
                event_data={"reason": "cancelled by the client"},
                require_no_transaction=True,
                values={"lease_owner": None, "lease_until": None},
            )
            order = self.orders.get(order_id)
            if order is None:
                raise NotFoundError(f"No order {order_id}.")
            if event is None:
                raise ConflictError(_why_not_cancellable(order))
            payloads = [event_payload(event)]
            children = []
            if order.type == OrderType.TWAP.value:
                children = TwapRepository(self.session).cancel_children(
                    order_id, {"reason": "its TWAP parent was cancelled"}, event.at
                )
                payloads += [event_payload(child) for child, _type, _at in children]
        metrics.order_finished(order.type, "cancelled", order.created_at)
        for _event, child_type, created_at in children:
            metrics.order_finished(child_type, "cancelled", created_at)
        self.publisher.publish_many(payloads)
        return order

    def _load_peaks(self, orders: Sequence[Order]) -> None:
        """Load the peak now of the trailing stops among `orders` (their own or their class's
        largest mark since they started: `Order.peak_seen`), one statement for all of them,
        so that their answers show it; other orders cost nothing."""
        ids = [o.id for o in orders if o.type == TRAILING and o.trail_since is not None]
        if ids:
            query = select(Order).where(Order.id.in_(ids)).options(undefer(Order.peak_seen))
            self.session.scalars(query).all()  # fills the loaded orders' `peak_seen`

    def _trigger_fields(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """An order's trigger columns and what its first event says: what it waits for, or
        that its condition is already met (it then runs at once); a TWAP parent's schedule."""
        if data["type"] == OrderType.TWAP.value:
            return parent_fields(data)
        return trigger_fields(data, self.quote, self.class_quote)

    def _check_cap(self, account_id: uuid.UUID, waiting: bool, cap: int, key: str | None) -> None:
        # Near the cap the account's submissions queue on an advisory lock and count again, so
        # concurrent ones cannot all slip past it (far from it, the count that goes with the
        # insert is enough: IN_FLIGHT_SLACK covers the submissions it cannot see).
        self.orders.lock_account(account_id)
        if self.intake.count_unfinished(account_id, waiting, cap) < cap:
            return
        if key is not None:
            existing = self.orders.get_by_idempotency_key(key, account_id)
            if existing is not None:
                return  # a replay creates nothing; _insert finds the conflict and replays
        if waiting:
            raise TooManyRequestsError(
                f"This account has {cap} orders waiting for their trigger (its limit, by default "
                "MAX_WAITING_ORDERS); submit more once some have triggered, expired or been "
                "cancelled.",
                headers={"Retry-After": "2"},
            )
        raise TooManyRequestsError(
            f"This account has {cap} orders in flight (its limit, by default "
            "MAX_ORDERS_IN_FLIGHT); submit more once some have finished.",
            headers={"Retry-After": "2"},
        )

    def _new_order(
        self,
        data: dict[str, Any],
        key: str | None,
        fingerprint: str,
        account_id: uuid.UUID = DEFAULT_ACCOUNT_ID,
        trigger: dict[str, Any] | None = None,
        trigger_data: dict[str, Any] | None = None,
    ) -> tuple[Order, dict[str, Any]]:
        """The order row to insert and its `pending` event (seq 1). Every value is known here,
        so nothing is read back after the insert: the row object is built from the values
        written."""
        now = datetime.now(UTC)
        order = Order(
            id=uuid.uuid4(),
            account_id=account_id,
            type=data["type"],
            status=OrderStatus.PENDING.value,
            token_in=data["tokenIn"].symbol,
            token_out=data["tokenOut"].symbol,
            amount_in=data["amount"],
            slippage_bps=data["slippageBps"],
            client_order_id=data.get("clientOrderId"),
            idempotency_key=key,
            request_fingerprint=fingerprint if key else None,
            last_seq=1,
            attempts=0,
            deliveries=0,
            created_at=now,
            updated_at=now,
            # Intake sends the task right after this commit. The reconciler counts an order as
            # possibly lost from its last dispatch, so it waits STALE_PENDING_AFTER_S from
            # here before sending it again (and the row needs no UPDATE after the send).
            dispatched_at=now,
            priority_fee_micro_lamports=data.get("priorityFee"),
            max_fee_lamports=data.get("maxFeeLamports"),
            mev_protection=data.get("mevProtection"),
            **{"waiting": False, **(trigger or {})},
        )
        first = {
            "orderId": str(order.id),
            "seq": 1,
            "status": OrderStatus.PENDING.value,
            "at": format_timestamp(now),
            "attempt": 0,
            "data": {**_pending_data(order), **(trigger_data or {})},
        }
        return order, first

    def _insert(
        self,
        by: IntakeCommitter | IntakeRepository,
        order: Order,
        first: dict[str, Any],
        far: int | None = None,
    ) -> Intake:
        """Insert the order and its `pending` event in one statement, `by` the committer (a
        unit of work by itself) or the repository (in the session's): INSERTED, or KEY_TAKEN
        on a key conflict. With `far`, the same statement counts the account's unfinished
        orders of the order's kind first and inserts nothing if they reach it (NEAR_CAP)."""
        key, now = order.idempotency_key, order.created_at
        first_data = json.dumps(first["data"], separators=(",", ":"))
        if far is not None:
            return by.insert_unless_near_cap(order, key, now, first_data, far)
        if by.insert_with_first_event(order, key, now, first_data):
            return Intake.INSERTED
        return Intake.KEY_TAKEN

    def _replay(self, key: str | None, account_id: uuid.UUID, fingerprint: str) -> SubmittedOrder:
        """The order an earlier submission created under `key` (its Idempotency-Key conflicted
        with ours), or a 422 if that submission's body was another."""
        existing = self.orders.get_by_idempotency_key(key or "", account_id)
        if existing is None:  # the conflicting row vanished (cannot happen: orders are kept)
            raise BadRequestError("Idempotency-Key conflict; retry the request.")
        if existing.request_fingerprint != fingerprint:
            raise UnprocessableError(
                "This Idempotency-Key was used with a different request body.",
                errors={"Idempotency-Key": ["Reused with a different body."]},
            )
        return SubmittedOrder(existing, False)

    def _schedule(self, order_id: uuid.UUID) -> None:
        try:
            dispatch.enqueue_schedule_slices(order_id)
        except Exception as exc:  # noqa: BLE001 - any broker failure; beat's next run covers it
            log.info(
                "twap %s accepted; its first slice waits for the scheduler (%s)", order_id, exc
            )

    def _dispatch(self, order_id: uuid.UUID, copy: dict[str, Any] | None = None) -> None:
        try:
            dispatch.enqueue_execute_order(order_id, copy=copy)
        except Exception as exc:  # noqa: BLE001 - any broker failure; the reconciler covers it
            log.warning("order %s accepted but not queued (%s); the reconciler will", order_id, exc)


CANCELLABLE = (OrderStatus.PENDING, OrderStatus.ROUTING)
IN_FLIGHT_SLACK = 32


def _why_not_cancellable(order: Order) -> str:
    if OrderStatus(order.status).is_terminal:
        return f"Order {order.id} is already {order.status}; there is nothing to cancel."
    if order.tx_hash:
        return (
            f"Order {order.id} is {order.status} and its swap transaction {order.tx_hash} has "
            "been built and may land on the chain; it can no longer be cancelled."
        )
    return f"Order {order.id} is {order.status}; it can no longer be cancelled."


def _pending_data(order: Order) -> dict[str, Any]:
    return {
        "type": order.type,
        "tokenIn": order.token_in,
        "tokenOut": order.token_out,
        "amount": format(Decimal(order.amount_in).normalize(), "f"),
        "slippageBps": order.slippage_bps,
        "clientOrderId": order.client_order_id,
    }


def _fingerprint(data: dict[str, Any]) -> str:
    canonical = {
        "type": data["type"],
        "tokenIn": data["tokenIn"].mint,
        "tokenOut": data["tokenOut"].mint,
        "amount": format(data["amount"].normalize(), "f"),
        "slippageBps": data["slippageBps"],
        "clientOrderId": data.get("clientOrderId"),
    }
    for name in ("limitPrice", "maxPrice", "triggerPrice", "activationPrice"):
        if data.get(name) is not None:
            canonical[name] = format(data[name].normalize(), "f")
    for leg, price in (("takeProfit", "limitPrice"), ("stopLoss", "triggerPrice")):
        if data.get(leg) is not None:
            canonical[leg] = format(data[leg][price].normalize(), "f")
    if data.get("trailBps") is not None:
        canonical["trailBps"] = data["trailBps"]
    for name in ("slices", "intervalS", "priorityFee", "maxFeeLamports", "mevProtection"):
        if data.get(name) is not None:
            canonical[name] = data[name]
    if data.get("expiresIn") is not None:  # as sent: its instant is later at each replay
        canonical["expiresIn"] = int(data["expiresIn"].total_seconds())
    elif data.get("expiresAt") is not None:
        canonical["expiresAt"] = data["expiresAt"].isoformat()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, order_id = raw.split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(order_id)
    except (ValueError, UnicodeDecodeError):
        raise UnprocessableError(
            "Invalid cursor.", errors={"cursor": ["Not a cursor returned by this API."]}
        ) from None
