"""Prometheus metrics (docs/operating.md, "Metrics"), correct across gunicorn workers and the
Celery pool.

Every series is named `order_engine_…`. With `PROMETHEUS_MULTIPROC_DIR` set (the `order-engine`
command sets it for every process it starts, and empties it when `run` starts a fresh stack),
each process writes its samples to memory-mapped files in that folder and `GET /metrics` sums
them over every process — API workers, the Celery worker and its pool children, the scheduler —
so a scrape sees the whole host whichever API process answers it. A process that exits leaves
its counters and histograms behind (totals never go backwards); its live gauges (open
WebSockets) are removed by `process_exited`, called from gunicorn's `child_exit` and Celery's
`worker_process_shutdown`.

Cost on the hot path: a counter increment or a histogram observation is a dict lookup and a
write to a memory-mapped file under a lock — a few microseconds, no I/O, no query. What needs a
query (queue depth, the oldest waiting order) is read once per scrape by `ScrapeCollector`, not
per order.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

# The folder must exist before the first metric is created, when the variable is set.
_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _MULTIPROC_DIR:
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

from prometheus_client import (  # noqa: E402 - after the folder exists
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from order_engine.infra.queues import QUEUES  # noqa: E402


def process_id(pid: int | None = None) -> str:
    """How a process's files are named: host name and pid, so that containers sharing the
    folder on a volume (docker-compose.yml), each with its own pid 1, 7, …, never share one."""
    return f"{socket.gethostname()}-{os.getpid() if pid is None else pid}"


if _MULTIPROC_DIR:
    # Before any metric exists: every value below is created with this naming.
    values.ValueClass = values.MultiProcessValue(process_identifier=process_id)

log = logging.getLogger(__name__)

PREFIX = "order_engine_"

# Seconds. Intake answers in milliseconds; a swap takes seconds (2–3 s landing by default, more
# with retries and a backlog), so the buckets span both.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ORDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0, 60.0, 120.0)

ORDERS_SUBMITTED = Counter(
    PREFIX + "orders_submitted_total",
    "Orders accepted (202), by type.",
    ["type"],
)
ORDERS_FINISHED = Counter(
    PREFIX + "orders_finished_total",
    "Orders that reached a final status (confirmed, failed, cancelled), by type.",
    ["type", "status"],
)
ORDERS_TRIGGERED = Counter(
    PREFIX + "orders_triggered_total",
    "Waiting orders the trigger engine moved to routing, by type and, for an OCO bracket, the "
    "leg that met the market (takeProfit, stopLoss; empty for the other types).",
    ["type", "leg"],
)
TRAILING_MARKS = Counter(
    PREFIX + "trailing_marks_written_total",
    "Marks written to the shared peaks of trailing stops (one per pair and size class whose "
    "quote rose above its newest mark, or whose orders started after it): none while the "
    "price does not rise.",
)
ORDER_FAILURES = Counter(
    PREFIX + "order_failures_total",
    "Orders that ended failed, by their final error code.",
    ["code"],
)
ORDER_RETRIES = Counter(
    PREFIX + "order_retries_total",
    "Failed attempts that were scheduled again, by the attempt's error code.",
    ["code"],
)
ORDER_STATUS_SECONDS = Histogram(
    PREFIX + "order_status_seconds",
    "Time an order spent in a status before leaving it (pending: from runnable to picked up "
    "by a worker; routing: quoting and signing; building: sending; submitted: until landed).",
    ["status"],
    buckets=ORDER_BUCKETS,
)
ORDER_DURATION_SECONDS = Histogram(
    PREFIX + "order_duration_seconds",
    "From acceptance (202) to the final status, by type and final status.",
    ["type", "status"],
    buckets=ORDER_BUCKETS,
)
INTAKE_SECONDS = Histogram(
    PREFIX + "intake_seconds",
    "Time to answer an order submission (POST /api/orders/execute), by HTTP status.",
    ["code"],
    buckets=FAST_BUCKETS,
)
WEBSOCKETS_OPEN = Gauge(
    PREFIX + "websockets_open",
    "WebSockets open on the API processes.",
    multiprocess_mode="livesum",
)
BATCH_SIZE = Histogram(
    PREFIX + "batch_size",
    "Calls run together by one round trip (batching.GroupCommit), by what they are: "
    "`transitions` (statements), `intake` (inserts), `events` (publications), `tasks` "
    "(Celery messages sent), `socket-slots` (sockets' slot takes and releases), `history` "
    "(sockets' live-record reads), `acks` (Celery messages acknowledged).",
    ["what"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
RPC_SECONDS = Histogram(
    PREFIX + "rpc_seconds",
    "Solana JSON-RPC call latency, by method.",
    ["method"],
    buckets=FAST_BUCKETS,
)
RPC_ERRORS = Counter(
    PREFIX + "rpc_errors_total",
    "Solana JSON-RPC calls that failed, by method and reason (timeout, http, rpc error code).",
    ["method", "reason"],
)

TWAP_SLICES = Counter(
    PREFIX + "twap_slices_total",
    "TWAP slices looked at by the scheduler, by outcome: `started` (a child order created), "
    "`held` (its quote did not meet the parent's limit: it waits for the next interval), "
    "`deferred` (the account's orders in flight at their cap: looked at again next time).",
    ["outcome"],
)

# Landing (docs/operating.md, "Metrics"; docs/design.md, "Landing on a contested chain").
LANDINGS = Counter(
    PREFIX + "landings_total",
    "Versions of swap transactions settled, by how they were sent (`rpc` or `bundle`) and "
    "outcome: `landed` (succeeded or failed on chain: it paid), `bundle_failed` (the block "
    "engine reports its bundle failed: nothing charged), `expired` (its blockhash expired first).",
    ["via", "outcome"],
)
LANDING_SLOTS = Histogram(
    PREFIX + "landing_slots",
    "Slots from a swap's send (its simulation's slot) to its landing, by via.",
    ["via"],
    buckets=(0, 1, 2, 3, 4, 6, 8, 12, 20, 40, 80, 150),
)
PRIORITY_FEE_LAMPORTS = Histogram(
    PREFIX + "priority_fee_lamports",
    "Priority fee a landed swap paid (limit × price), lamports, by via and venue.",
    ["via", "dex"],
    buckets=(0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000),
)
TIP_LAMPORTS = Histogram(
    PREFIX + "tip_lamports",
    "Tip a landed protected swap paid the block engine, lamports, by venue.",
    ["dex"],
    buckets=(1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000),
)

FINAL_STATUSES = ("confirmed", "failed", "cancelled")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render(extra: Collector | None = None) -> tuple[bytes, str]:
    """The exposition text for a scrape: every process's samples (multiprocess mode) or this
    process's (without PROMETHEUS_MULTIPROC_DIR), plus the scrape-time collector."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    if extra is not None:
        registry = _WithExtra(registry, extra)  # type: ignore[assignment]
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _WithExtra:
    """A registry view that adds one collector for one scrape without registering it."""

    def __init__(self, registry: CollectorRegistry, extra: Collector) -> None:
        self.registry, self.extra = registry, extra

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
        yield from self.extra.collect()


class ScrapeCollector(Collector):
    """What is read when Prometheus scrapes, not counted per order: the broker's queue depths
    (one LLEN per queue) and the age of the oldest order that is ready but not picked up (one
    indexed query)."""

    def __init__(self, broker: Any, oldest_ready: Any) -> None:
        self.broker = broker  # a redis.Redis on the broker's database, or None (not Redis)
        self.oldest_ready = oldest_ready  # () -> datetime | None

    def collect(self) -> Iterable[Any]:
        depth = GaugeMetricFamily(
            PREFIX + "queue_depth",
            "Messages waiting in the Celery broker's queue (read at scrape time).",
            labels=["queue"],
        )
        if self.broker is not None:
            for queue in QUEUES:
                try:
                    depth.add_metric([queue], float(self.broker.llen(queue)))
                except Exception as exc:  # noqa: BLE001 - a scrape reports what it can
                    log.warning("queue depth of %s unavailable: %s", queue, exc)
        yield depth
        age = GaugeMetricFamily(
            PREFIX + "oldest_pending_order_age_seconds",
            "Age of the oldest order that waits in `pending` for a worker (limit and sniper "
            "orders waiting for their price are not counted); 0 when none (read at scrape time).",
        )
        try:
            oldest = self.oldest_ready()
        except Exception as exc:  # noqa: BLE001
            log.warning("oldest pending order unavailable: %s", exc)
        else:
            seconds = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
            age.add_metric([], max(seconds, 0.0))
        yield age


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read_samples() -> Samples:
    """Every sample of the engine's own series, summed over the processes, keyed by name and
    sorted labels (what a scrape would show, without the text format)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    samples: Samples = {}
    for family in registry.collect():
        if not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def summed(samples: Samples, name: str, by: str | None = None, **labels: str) -> Any:
    """The sum of `name` over the label sets that include `labels`; with `by`, a dict from
    that label's values to their sums."""
    wanted = set(labels.items())
    totals: dict[str, float] = {}
    for (sample_name, sample_labels), value in samples.items():
        if sample_name != name or not wanted <= set(sample_labels):
            continue
        key = dict(sample_labels).get(by, "") if by else ""
        totals[key] = totals.get(key, 0.0) + value
    return totals if by else totals.get("", 0.0)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile from cumulative histogram buckets [(upper bound, count)], interpolated
    linearly inside a bucket as PromQL's histogram_quantile does; None without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            width = count - lower_count
            fraction = (rank - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound


def process_exited(pid: int) -> None:
    """Drop a dead process's live gauges (its counters stay: totals never go backwards)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(process_id(pid))


# -- what the services record ----------------------------------------------------------------


def order_submitted(order_type: str) -> None:
    ORDERS_SUBMITTED.labels(order_type).inc()


def order_finished(
    order_type: str, status: str, created_at: datetime | None, code: str | None = None
) -> None:
    """An order reached a final status (after the commit that recorded it)."""
    ORDERS_FINISHED.labels(order_type, status).inc()
    if status == "failed":
        ORDER_FAILURES.labels(code or "UNKNOWN").inc()
    if created_at is not None:
        elapsed = (datetime.now(UTC) - created_at).total_seconds()
        ORDER_DURATION_SECONDS.labels(order_type, status).observe(max(elapsed, 0.0))


def order_triggered(order_type: str, leg: str | None) -> None:
    ORDERS_TRIGGERED.labels(order_type, leg or "").inc()


def trailing_marks_written(count: int) -> None:
    TRAILING_MARKS.inc(count)


def twap_slices(started: int, held: int, deferred: int) -> None:
    for outcome, count in (("started", started), ("held", held), ("deferred", deferred)):
        if count:
            TWAP_SLICES.labels(outcome).inc(count)


def order_retried(code: str) -> None:
    ORDER_RETRIES.labels(code).inc()


def transaction_landed(
    via: str, dex: str, slots: int | None, priority_lamports: int, tip_lamports: int
) -> None:
    LANDINGS.labels(via, "landed").inc()
    if slots is not None:
        LANDING_SLOTS.labels(via).observe(max(slots, 0))
    PRIORITY_FEE_LAMPORTS.labels(via, dex or "").observe(priority_lamports)
    if via == "bundle":
        TIP_LAMPORTS.labels(dex or "").observe(tip_lamports)


def transaction_not_landed(via: str, outcome: str) -> None:
    """`bundle_failed` or `expired`."""
    LANDINGS.labels(via, outcome).inc()


def time_in_status(status: str, seconds: float) -> None:
    ORDER_STATUS_SECONDS.labels(status).observe(max(seconds, 0.0))


class StatusClock:
    """Times the statuses one executor moves an order through (wall clock, this process)."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since = time.monotonic()

    def left(self, status: str) -> None:
        now = time.monotonic()
        time_in_status(status, now - self.since)
        self.since = now
