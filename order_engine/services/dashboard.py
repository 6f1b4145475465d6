"""What the operators' dashboard shows, built so that it costs nothing per order.

Everything that would otherwise scale with the orders flowing is read from the Prometheus
series the processes already keep (order_engine/infra/metrics.py): orders per second from the
submission counter, finished orders and failure codes from their counters, p50/p99 accept →
confirmed from the duration histogram's buckets over the last minute. The database is asked
three bounded questions — the unfinished orders by status (a partial index: grows with the
orders in flight, not with the history), the newest orders and the newest waiting ones with
their trigger (index scans, LIMIT) — and the broker for its queue lengths. A snapshot is made
at most once a second per API process, whatever the number of dashboards open, and only while
one is open.
"""

from __future__ import annotations

import collections
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from order_engine.domain.time import format_timestamp
from order_engine.domain.triggers import BracketLeg, plain
from order_engine.infra import metrics
from order_engine.models import OrderStatus, OrderType
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.trigger import TriggerRepository
from order_engine.repositories.twap import TwapRepository
from order_engine.services.triggers.describe import TRIGGER_COLUMNS, awaits

REFRESH_S = 1.0
RATE_WINDOW_S = 10.0
LATENCY_WINDOW_S = 60.0
LATEST = 15
IN_FLIGHT_STATUSES = ("pending", "routing", "building", "submitted")
FINAL_STATUSES = ("confirmed", "failed", "cancelled")
DURATION = "order_engine_order_duration_seconds_bucket"
# (monotonic time, orders submitted, confirmed-duration buckets) of earlier snapshots
History = collections.deque[tuple[float, float, dict[float, float]]]


class DashboardService:
    def __init__(self, session: Session, broker: Any) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.triggers = TriggerRepository(session)
        self.twaps = TwapRepository(session)
        self.broker = broker  # a Redis client on the broker, or None (another broker)

    def snapshot(self, history: History) -> dict[str, Any]:
        """One picture of the engine; `history` keeps the counters of earlier snapshots (this
        process's) so that rates and latencies are over recent time, not since start."""
        samples = metrics.read_samples()
        now = time.monotonic()
        submitted = metrics.summed(samples, "order_engine_orders_submitted_total")
        buckets = _confirmed_buckets(samples)
        history.append((now, submitted, buckets))
        while history and now - history[0][0] > LATENCY_WINDOW_S + REFRESH_S:
            history.popleft()
        with self.session.begin():
            unfinished = self.orders.count_unfinished_by_status()
            latest = self.orders.page(limit=LATEST).orders
            latest_rows = [_order_row(order) for order in latest]
            waiting_rows = [_waiting_row(order) for order in self.triggers.newest_waiting(LATEST)]
            parents, slices = self.twaps.running()
        finished = metrics.summed(samples, "order_engine_orders_finished_total", by="status")
        return {
            "at": format_timestamp(datetime.now(UTC)),
            "ordersPerSecond": _rate(history, now),
            "inFlight": {status: unfinished.get(status, 0) for status in IN_FLIGHT_STATUSES},
            "finished": {status: int(finished.get(status, 0)) for status in FINAL_STATUSES},
            "failureCodes": {
                code: int(count)
                for code, count in sorted(
                    metrics.summed(samples, "order_engine_order_failures_total", by="code").items(),
                    key=lambda item: -item[1],
                )
            },
            "latency": _latency(history, buckets),
            "queueDepth": self._queue_depth(),
            "twap": {
                "running": parents,
                "slicesInFlight": slices,
                **{
                    f"slices{outcome.capitalize()}": int(count)
                    for outcome, count in metrics.summed(
                        samples, "order_engine_twap_slices_total", by="outcome"
                    ).items()
                },
            },
            "landing": {via: _landing(samples, via) for via in ("bundle", "rpc")},
            "latest": latest_rows,
            "waiting": waiting_rows,
        }

    def _queue_depth(self) -> dict[str, int | None]:
        depth: dict[str, int | None] = {}
        for queue in metrics.QUEUES:
            try:
                depth[queue] = int(self.broker.llen(queue)) if self.broker is not None else None
            except Exception:  # noqa: BLE001 - the page shows what it can
                depth[queue] = None
        return depth


def _confirmed_buckets(samples: metrics.Samples) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for (name, labels), value in samples.items():
        if name != DURATION:
            continue
        label = dict(labels)
        if label.get("status") != OrderStatus.CONFIRMED.value:
            continue
        bound = float(label["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


def _landing(samples: metrics.Samples, via: str) -> dict[str, Any]:
    """How one way of sending lands, since each process started: versions landed, failed as
    bundles and expired, the share landed, the median slots from send to land, and the mean
    priority fee and tip of the landed ones (lamports)."""
    outcomes = metrics.summed(samples, "order_engine_landings_total", by="outcome", via=via)
    landed = int(outcomes.get("landed", 0))
    settled = sum(int(count) for count in outcomes.values())
    slots = [
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "order_engine_landing_slots_bucket" and dict(labels).get("via") == via
    ]
    fee_sum = metrics.summed(samples, "order_engine_priority_fee_lamports_sum", via=via)
    tip_sum = metrics.summed(samples, "order_engine_tip_lamports_sum")
    median = metrics.quantile(0.5, _merged(slots))
    return {
        "landed": landed,
        "bundleFailed": int(outcomes.get("bundle_failed", 0)),
        "expired": int(outcomes.get("expired", 0)),
        "landedShare": round(landed / settled, 3) if settled else None,
        "slotsP50": None if median is None else round(median, 1),
        "priorityLamportsAvg": round(fee_sum / landed) if landed else None,
        "tipLamportsAvg": round(tip_sum / landed) if landed and via == "bundle" else None,
    }


def _merged(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Cumulative buckets of several series (venues, processes) summed per bound."""
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    return sorted(merged.items())


def _rate(history: History, now: float) -> float:
    """Orders accepted per second over the last RATE_WINDOW_S (as far back as we have)."""
    older = [entry for entry in history if now - entry[0] <= RATE_WINDOW_S]
    first, last = older[0], history[-1]
    elapsed = last[0] - first[0]
    return round((last[1] - first[1]) / elapsed, 2) if elapsed > 0 else 0.0


def _latency(history: History, buckets: dict[float, float]) -> dict[str, Any]:
    """p50/p99 accept → confirmed of the orders confirmed over the last minute (or since this
    process first looked, if that is shorter)."""
    base = history[0][2] if len(history) > 1 else {}
    recent = [(bound, count - base.get(bound, 0.0)) for bound, count in buckets.items()]
    count = max((c for _b, c in recent), default=0.0)
    return {
        "p50": _seconds(metrics.quantile(0.5, recent)),
        "p99": _seconds(metrics.quantile(0.99, recent)),
        "confirmed": int(count),
        "windowS": round(history[-1][0] - history[0][0]) if len(history) > 1 else 0,
    }


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _order_row(order: Any) -> dict[str, Any]:
    return {
        "orderId": str(order.id),
        "type": order.type,
        "pair": f"{_short(order.token_in)}→{_short(order.token_out)}",
        "amount": format(order.amount_in.normalize(), "f"),
        "status": order.status,
        "dex": order.dex,
        "failureCode": order.failure_code,
        "createdAt": format_timestamp(order.created_at),
    }


def _waiting_row(order: Any) -> dict[str, Any]:
    """A waiting order as the dashboard lists it: what makes it fire, and a trailing stop's peak
    (`peak_seen` when loaded)."""
    values = {name: getattr(order, name) for name in TRIGGER_COLUMNS}
    peak = order.__dict__.get("peak_seen") or order.peak_price
    if order.type == OrderType.TRAILING_STOP.value and order.trail_since is not None and peak:
        values["peak_price"] = peak
    shown = awaits(order.type, order.token_out, values)
    return {
        "orderId": str(order.id),
        "type": order.type,
        "pair": f"{_short(order.token_in)}→{_short(order.token_out)}",
        "amount": plain(order.amount_in),
        "trigger": _trigger_text(order.type, shown),
        "peak": shown.get("peakPrice"),
        "createdAt": format_timestamp(order.created_at),
    }


def _trigger_text(order_type: str, shown: dict[str, Any]) -> str:
    """What fires the order, in a few characters: ≥ for a rise, ≤ for a fall."""
    if order_type == OrderType.OCO.value:
        take, loss = shown[BracketLeg.TAKE_PROFIT.value], shown[BracketLeg.STOP_LOSS.value]
        return f"≥ {take['limitPrice']} or ≤ {loss['triggerPrice']}"
    if order_type == OrderType.TRAILING_STOP.value:
        if "triggerLevel" in shown:
            return f"≤ {shown['triggerLevel']} ({shown['trailBps']} bps trail)"
        return f"starts at ≥ {shown.get('activationPrice', '?')} ({shown['trailBps']} bps trail)"
    if "pool" in shown:
        return f"a pool for {_short(shown['pool']['mint'])}"
    if "triggerPrice" in shown:
        return f"≤ {shown['triggerPrice']}"
    return f"≥ {shown.get('limitPrice')}"


def _short(token: str) -> str:
    return token if len(token) <= 10 else f"{token[:4]}…{token[-4:]}"


class DashboardFeed:
    """One snapshot a second per process, shared by every dashboard open on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made_at = 0.0
        self._snapshot: dict[str, Any] | None = None
        self._history: History = collections.deque()

    def current(self, service: DashboardService) -> dict[str, Any]:
        with self._lock:
            if self._snapshot is None or time.monotonic() - self._made_at >= REFRESH_S:
                self._snapshot = service.snapshot(self._history)
                self._made_at = time.monotonic()
            return self._snapshot


feed = DashboardFeed()
