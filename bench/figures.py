"""Turn raw load-generator records, order events and WebSocket receipts into figures.

Load-generator record: [offset s, latency ms, HTTP status, orderId, wall time of the reply].
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.plan import Plan
from bench.stats import median, summary

TERMINAL = ("confirmed", "failed", "cancelled")
IN_FLIGHT = ("pending", "routing", "building", "submitted")
RAMP_S = 5.0  # left out of the steady-state completion rate: the pipeline is still filling


# -- HTTP -------------------------------------------------------------------------------------


def closed_loop_summary(result: dict[str, Any]) -> dict[str, Any]:
    records = result["records"]
    ok = [r for r in records if r[2] == 202]
    return {
        "requests": len(records),
        "ok": len(ok),
        "errors": dict(Counter(str(r[2]) for r in records if r[2] != 202)),
        "req_per_s": round(len(ok) / result["elapsed_s"], 1),
        "latency_ms": summary(r[1] for r in ok),
    }


def open_loop_summary(result: dict[str, Any], rate: int) -> dict[str, Any]:
    records = result["records"]
    ok = [r for r in records if r[2] == 202]
    finished_s = max((r[0] + r[1] / 1000 for r in records), default=0.0)
    return {
        "offered_per_s": rate,
        "requests": result["offered"],
        "answered": len(records),
        "ok": len(ok),
        "errors": dict(Counter(str(r[2]) for r in records if r[2] != 202)),
        "achieved_per_s": round(len(ok) / finished_s, 1) if finished_s else 0.0,
        "latency_ms": summary(r[1] for r in ok),
    }


def intake_result(
    saturation: dict[str, list[dict[str, Any]]], open_loop: dict[str, Any], plan: Plan
) -> dict[str, Any]:
    """Saturation medians, their ratio, and the engine's p99 at 200 req/s (DESIGN §7)."""
    medians = {name: median(run["req_per_s"] for run in runs) for name, runs in saturation.items()}
    ratio = None
    engine, baseline = medians.get("engine"), medians.get("baseline")
    if engine is not None and baseline:
        ratio = round(engine / baseline, 3)
    at_200 = open_loop["engine"].get("200", {}).get("latency_ms", {})
    return {
        "saturation": saturation,
        "saturation_median_per_s": medians,
        "ratio_engine_to_baseline": ratio,
        "engine_p99_ms_at_200": at_200.get("p99"),
        "open_loop": open_loop,
        "concurrency": plan.saturation_concurrency,
        "worker": "stopped (the queued tasks are discarded between steps)",
    }


# -- orders and their events ------------------------------------------------------------------


def status_counts(engine: Engine) -> dict[str, Any]:
    """Orders per status, and the sessions waiting on a row lock (contention evidence)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status")).all()
        waiting = conn.execute(
            text(
                "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90) "
                "FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalars()
        waiting_queries = list(waiting)
    counts: dict[str, Any] = {status: int(n) for status, n in rows}
    counts["lock_waits"] = len(waiting_queries)
    counts["lock_wait_queries"] = waiting_queries
    counts["in_flight"] = sum(counts.get(s, 0) for s in IN_FLIGHT)
    counts["terminal"] = sum(counts.get(s, 0) for s in TERMINAL)
    return counts


def _load_events(engine: Engine) -> tuple[dict[str, list[tuple]], dict[str, tuple]]:
    """Every event and order row, from one snapshot (the worker may still be running)."""
    snapshot = engine.execution_options(isolation_level="REPEATABLE READ")
    with snapshot.begin() as conn:
        events = conn.execute(
            text(
                "SELECT order_id::text, seq, status, extract(epoch FROM at)::float8, attempt "
                "FROM order_events ORDER BY order_id, seq"
            )
        ).all()
        orders = conn.execute(
            text(
                "SELECT id::text, status, attempts, extract(epoch FROM created_at)::float8, "
                "failure_code FROM orders"
            )
        ).all()
    by_order: dict[str, list[tuple]] = defaultdict(list)
    for order_id, seq, status, at, attempt in events:
        by_order[order_id].append((seq, status, at, attempt))
    return by_order, {row[0]: tuple(row[1:]) for row in orders}


@dataclass
class _Tally:
    """What the accepted orders' rows and events add up to."""

    accept_to_confirmed: list[float] = field(default_factory=list)
    created_to_confirmed: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    in_status: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    finals: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retried: int = 0

    def add(self, order: tuple[Any, ...] | None, history: list[tuple], accepted_at: float) -> None:
        status, attempts, created_at, failure_code = order or ("missing", 0, None, None)
        self.finals[status] += 1
        if attempts > 1:
            self.retried += 1
        if status == "failed":
            self.failures[failure_code or "unknown"] += 1
        for (_, s1, at1, _), (_, _, at2, _) in zip(history, history[1:], strict=False):
            self.in_status[s1].append((at2 - at1) * 1000)
        confirmed = [at for _, s, at, _ in history if s == "confirmed"]
        if confirmed:
            self.accept_to_confirmed.append((confirmed[0] - accepted_at) * 1000)
            self.created_to_confirmed.append((confirmed[0] - created_at) * 1000)
        terminal = [at for _, s, at, _ in history if s in TERMINAL]
        if terminal:
            self.completions.append(terminal[0])


def end_to_end(
    engine: Engine,
    accepted: dict[str, float],
    load: dict[str, Any],
    started: float,
    window_s: float,
    rate: int,
    timeline: list[dict[str, Any]],
) -> dict[str, Any]:
    """Throughput, accept→confirmed latency, time per status, retries and losses."""
    events, orders = _load_events(engine)
    tally = _Tally()
    for order_id, accepted_at in accepted.items():
        tally.add(orders.get(order_id), events.get(order_id, []), accepted_at)
    # Orders the API created whose 202 the client never saw (it gave up waiting): they still
    # load the worker, but no client is waiting for them.
    unanswered = sum(1 for oid, o in orders.items() if oid not in accepted and o[2] >= started)
    http = open_loop_summary(load, rate)
    completions = tally.completions
    return {
        "offered_per_s": rate,
        "window_s": window_s,
        "accepted": len(accepted),
        "accepted_per_s": http["achieved_per_s"],
        "intake_latency_ms": http["latency_ms"],
        "http_errors": http["errors"],
        "completed": len(completions),
        "steady_completed_per_s": _steady_rate(completions, started, window_s),
        "overall_completed_per_s": _overall_rate(completions, started),
        "accept_to_confirmed_ms": summary(tally.accept_to_confirmed, 1),
        "created_to_confirmed_ms": summary(tally.created_to_confirmed, 1),
        "time_in_status_ms": {s: summary(v, 1) for s, v in tally.in_status.items()},
        "final_status": dict(tally.finals),
        "failures": dict(tally.failures),
        "retried_orders": tally.retried,
        "lost": sum(n for status, n in tally.finals.items() if status not in TERMINAL),
        "created_without_reply": unanswered,
        "lock_waits": summary((t["lock_waits"] for t in timeline), 1),
        "lock_wait_queries": Counter(
            q for t in timeline for q in t.get("lock_wait_queries", [])
        ).most_common(5),
        "completions_per_second": _per_second(completions, started),
        "timeline": [
            {k: v for k, v in t.items() if k != "lock_wait_queries"}
            | {"t": round(t["t"] - started, 1)}
            for t in timeline
        ],
    }


def _steady_rate(completions: list[float], started: float, window_s: float) -> float | None:
    """Completions per second in [start + ramp, start + window]: the pipeline is full then."""
    low, high = started + RAMP_S, started + window_s
    if high <= low:
        return None
    return round(sum(1 for t in completions if low <= t < high) / (high - low), 1)


def _overall_rate(completions: list[float], started: float) -> float | None:
    if not completions:
        return None
    return round(len(completions) / (max(completions) - started), 1)


def _per_second(moments: list[float], started: float) -> list[int]:
    if not moments:
        return []
    buckets = [0] * (int(max(moments) - started) + 1)
    for moment in moments:
        if moment >= started:
            buckets[int(moment - started)] += 1
    return buckets


# -- WebSocket subscribers ---------------------------------------------------------------------


def live_updates(
    results: list[dict[str, Any]], tapped: dict[str, Any], worker_started: float
) -> dict[str, Any]:
    """Connection failures, complete streams, and the lag of every live event.

    With the Redis tap's receipt times, each lag splits into `at` → Redis (worker side) and
    Redis → socket (API side); `tap` says how much of the stream the tap saw, and why not all.
    An event the client had before the tap read it shows the tap's own delay, by which
    Redis → socket reads low.
    """
    subscribers = [s for result in results for s in result.get("subscribers", [])]
    errors = [r["error"] for r in [*results, tapped] if "error" in r]
    published = {(order_id, seq): at for order_id, seq, at in tapped.get("received", [])}
    lags: list[float] = []
    lag_by_status: dict[str, list[float]] = defaultdict(list)
    worker_side: list[float] = []
    api_side: list[float] = []
    for subscriber in subscribers:
        for seq, status, at, received_at in subscriber["events"]:
            at_s = _epoch(at)
            if at_s <= subscriber["openedAt"]:
                continue  # replayed from history, not pushed live
            lags.append((received_at - at_s) * 1000)
            lag_by_status[status].append(lags[-1])
            tap_at = published.get((subscriber["orderId"], seq))
            if tap_at is not None:
                worker_side.append((tap_at - at_s) * 1000)
                api_side.append((received_at - tap_at) * 1000)
    connected = [s for s in subscribers if s["connected"]]
    return {
        "subscribers": len(subscribers),
        "connected": len(connected),
        "connection_failures": len(subscribers) - len(connected),
        "stream_errors": dict(Counter(s["error"] for s in subscribers if s["error"])),
        "complete_streams": sum(1 for s in subscribers if _complete(s["events"])),
        "close_codes": dict(Counter(str(s["closeCode"]) for s in subscribers)),
        "connect_ms": summary(s["connectMs"] for s in connected),
        "live_events": len(lags),
        "lag_ms": summary(lags, 1),
        "lag_ms_by_status": {s: summary(v, 1) for s, v in lag_by_status.items()},
        "lag_at_to_redis_ms": summary(worker_side, 1),
        "lag_redis_to_socket_ms": summary(api_side, 1),
        "lag_samples_ms": [round(v, 1) for v in lags],
        "load_generator_errors": errors,
        "tap": {
            "events": len(published),
            "reconnects": tapped.get("reconnects"),
            "reconnect_cause": tapped.get("reconnect_cause"),
            "unreadable": tapped.get("unreadable"),
            "error": tapped.get("error"),
            "after_client": sum(1 for v in api_side if v < 0),
            "after_client_max_ms": round(max(0.0, -min(api_side, default=0.0)), 1),
        },
        "worker_started_at": worker_started,
    }


def _complete(events: list[list[Any]]) -> bool:
    """Every seq from 1, each once, in order, ending with a terminal status."""
    seqs = [e[0] for e in events]
    return bool(events) and events[-1][1] in TERMINAL and seqs == list(range(1, len(seqs) + 1))


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- issue 10's side-by-side load (`--preset peer`) --------------------------------------------


def peer(engine: Engine, result: dict[str, Any]) -> dict[str, Any]:
    """Rate, accept → terminal latency (the 202's arrival to the terminal event's `at`), the
    final statuses, and how many WebSocket streams were exact."""
    posts = result["posts"]
    accepted = {r[3]: r[4] for r in posts if r[2] == 202}
    events, orders = _load_events(engine)
    to_terminal: list[float] = []
    to_confirmed: list[float] = []
    terminal_at: list[float] = []
    finals: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for order_id, accepted_at in accepted.items():
        status, _, _, failure_code = orders.get(order_id) or ("missing", 0, None, None)
        finals[status] += 1
        if status == "failed":
            failures[failure_code or "unknown"] += 1
        history = events.get(order_id, [])
        ends = [at for _, s, at, _ in history if s in TERMINAL]
        if ends:
            terminal_at.append(ends[0])
            to_terminal.append((ends[0] - accepted_at) * 1000)
        confirmed = [at for _, s, at, _ in history if s == "confirmed"]
        if confirmed:
            to_confirmed.append((confirmed[0] - accepted_at) * 1000)
    started = result["started"]
    span = (max(terminal_at) - started) if terminal_at else 0.0
    subscribers = result["subscribers"]
    exact = sum(1 for s in subscribers if _complete(s["events"]))
    # The terminal event as the client saw it, from the 202's arrival.
    seen_terminal = [
        (s["events"][-1][3] - accepted[s["orderId"]]) * 1000
        for s in subscribers
        if s["events"] and s["events"][-1][1] in TERMINAL and s["orderId"] in accepted
    ]
    return {
        "posted": len(posts),
        "accepted": len(accepted),
        "http_errors": dict(Counter(str(r[2]) for r in posts if r[2] != 202)),
        "intake_latency_ms": summary((r[1] for r in posts if r[2] == 202), 1),
        "post_phase_s": round(result["posted"] - started, 2),
        "posted_per_s": round(len(accepted) / (result["posted"] - started), 1)
        if result["posted"] > started
        else None,
        "completed": len(terminal_at),
        "span_s": round(span, 2),
        "orders_per_s": round(len(terminal_at) / span, 1) if span else None,
        "accept_to_terminal_ms": summary(to_terminal, 1),
        "accept_to_confirmed_ms": summary(to_confirmed, 1),
        "accept_to_terminal_seen_ms": summary(seen_terminal, 1),
        "final_status": dict(finals),
        "failures": dict(failures),
        "lost": sum(n for status, n in finals.items() if status not in TERMINAL),
        "streams": len(subscribers),
        "streams_connected": sum(1 for s in subscribers if s["connected"]),
        "streams_exact": exact,
        "streams_exact_pct": round(exact * 100 / len(subscribers), 1) if subscribers else None,
        "stream_errors": dict(Counter(s["error"] for s in subscribers if s["error"])),
        "stream_faults": _stream_faults(subscribers),
        "close_codes": dict(Counter(str(s["closeCode"]) for s in subscribers)),
        "connect_ms": summary((s["connectMs"] for s in subscribers if s["connected"]), 1),
    }


def _stream_faults(subscribers: list[dict[str, Any]]) -> dict[str, int]:
    """Why the inexact streams were not exact (a stream may have several faults)."""
    faults: Counter[str] = Counter()
    for s in subscribers:
        events = s["events"]
        seqs = [e[0] for e in events]
        if _complete(events):
            continue
        if not events:
            faults["no event"] += 1
            continue
        if len(set(seqs)) < len(seqs):
            faults["duplicate seq"] += 1
        if sorted(set(seqs)) != list(range(1, max(seqs) + 1)):
            faults["missing seq"] += 1
        if seqs != sorted(seqs):
            faults["out of order"] += 1
        if events[-1][1] not in TERMINAL:
            faults["did not end with the terminal event"] += 1
    return dict(faults)


# -- the trigger engine (issue 13) -------------------------------------------------------------


def triggered_count(engine: Engine) -> int:
    """Trigger events written so far (the `routing` event whose data says `triggered`)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM order_events WHERE data ? 'triggered'")
            ).scalar_one()
        )


def crossing_counts(engine: Engine, order_ids: list[str]) -> dict[str, int]:
    """Of these orders: how many wait, have a `routing` event, are terminal."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE o.waiting), "
                "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM order_events e "
                "WHERE e.order_id = o.id AND e.status = 'routing')), "
                "count(*) FILTER (WHERE o.status IN ('confirmed', 'failed', 'cancelled')) "
                "FROM orders o WHERE o.id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": order_ids},
        ).one()
    return {"waiting": row[0], "routed": row[1], "terminal": row[2]}


def triggers_crossing(engine: Engine, order_ids: list[str], moved_at: float) -> dict[str, Any]:
    """From the market's move to each order's `routing` event (the trigger engine's, which
    routes the order as it triggers it), and from that to the executor's `building` event;
    the evaluations that triggered them (one trigger statement writes one `at` for all its
    events); the orders' final statuses.

    An order re-armed by the worker (the market moved back between its trigger and the
    executor's quote) is triggered again: its `building` latency runs from the trigger just
    before it.
    """
    with engine.connect() as conn:
        events = conn.execute(
            text(
                "SELECT order_id::text, status, extract(epoch FROM at)::float8, "
                "data ? 'triggered', data ? 'rearmed' FROM order_events "
                "WHERE order_id = ANY(CAST(:ids AS uuid[])) ORDER BY order_id, seq"
            ),
            {"ids": order_ids},
        ).all()
        orders = conn.execute(
            text("SELECT status, failure_code FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": order_ids},
        ).all()
    history: dict[str, list[tuple[str, float, bool, bool]]] = defaultdict(list)
    for order_id, status, at, triggered, rearmed in events:
        history[order_id].append((status, at, triggered, rearmed))
    move_to_routing: list[float] = []
    routing_to_building: list[float] = []
    evaluations: Counter[float] = Counter()
    rearmed = 0
    for steps in history.values():
        triggers = [at for _, at, triggered, _ in steps if triggered]
        evaluations.update(triggers)
        rearmed += sum(1 for _, _, _, again in steps if again)
        routing = next((at for status, at, _, _ in steps if status == "routing"), None)
        if routing is None:
            continue
        move_to_routing.append((routing - moved_at) * 1000)
        building = next((at for status, at, _, _ in steps if status == "building"), None)
        before = [at for at in triggers if building is not None and at <= building]
        if building is not None and before:
            routing_to_building.append((building - before[-1]) * 1000)
    finals = Counter(status for status, _ in orders)
    return {
        "routed": len(move_to_routing),
        "move_to_routing_ms": summary(move_to_routing, 1),
        "routing_to_building_ms": summary(routing_to_building, 1),
        "evaluations": [
            [round((at - moved_at) * 1000, 1), count] for at, count in sorted(evaluations.items())
        ],
        "rearmed": rearmed,
        "final_status": dict(finals),
        "failures": dict(Counter(code or "unknown" for s, code in orders if s == "failed")),
    }
