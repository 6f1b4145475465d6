"""The figures of a phase, from the load generators' records, the orders' rows and events, and
the WebSocket receipts: rates, latency percentiles, final statuses, exact streams.

A load generator's record: [offset or send time s, latency ms, HTTP status, orderId, wall time
of the reply]. An event's `at` is the worker's wall clock when it wrote the transition (same
machine as the clients), so accept → confirmed is the event's `at` minus the 202's arrival.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

TERMINAL = ("confirmed", "failed", "cancelled")
IN_FLIGHT = ("pending", "routing", "building", "submitted")
RAMP_S = 5.0  # left out of the steady-state completion rate: the pipeline is still filling
EVENTS_SQL = text("SELECT order_id::text, status, extract(epoch FROM at)::float8 "
                  "FROM order_events ORDER BY order_id, seq")  # fmt: skip
ORDERS_SQL = text("SELECT id::text, status, attempts, extract(epoch FROM created_at)::float8, "
                  "failure_code FROM orders")  # fmt: skip
# An intake run's figures in the report: its rate (closed loop: req/s; open loop: achieved),
# latency percentiles, errors (-1: never sent, no connection came free; 0: no answer in 30 s).
RUN_FIGURES = ("req_per_s", "achieved_per_s", "latency_ms", "errors")


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of sorted values by linear interpolation; None for none."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Iterable[float], digits: int = 2) -> dict[str, Any]:
    """count, mean, p50, p95, p99 and max of `values`, rounded for the report."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    figures = {f"p{q}": percentile(ordered, q) for q in (50, 95, 99)}
    figures |= {"mean": sum(ordered) / len(ordered), "max": ordered[-1]}
    return {"count": len(ordered), **{k: round(v or 0.0, digits) for k, v in figures.items()}}


def _http(records: list[list[Any]]) -> dict[str, Any]:
    ok = [r for r in records if r[2] == 202]
    errors = dict(Counter(str(r[2]) for r in records if r[2] != 202))
    return {"requests": len(records), "ok": len(ok), "errors": errors,
            "latency_ms": summary(r[1] for r in ok)}  # fmt: skip


def closed_loop(result: dict[str, Any]) -> dict[str, Any]:
    http = _http(result["records"])
    return {**http, "req_per_s": round(http["ok"] / result["elapsed_s"], 1)}


def open_loop(result: dict[str, Any], rate: float) -> dict[str, Any]:
    records = result["records"]
    http = _http(records)
    finished_s = max((r[0] + r[1] / 1000 for r in records), default=0.0)
    achieved = round(http["ok"] / finished_s, 1) if finished_s else 0.0
    return {**http, "offered_per_s": rate, "offered": result["offered"], "achieved_per_s": achieved}


def intake(saturation: dict[str, list[dict[str, Any]]], rates: dict[str, Any]) -> dict[str, Any]:
    """Saturation medians, their ratio engine ÷ baseline, the engine's p99 at 200 req/s, and
    every run's figures under a label (endpoint, run)."""
    medians = {
        n: percentile(sorted(r["req_per_s"] for r in runs), 50) for n, runs in saturation.items()
    }
    engine, baseline = medians.get("engine"), medians.get("baseline")
    runs = {f"{n} saturation {i + 1}": r for n, rs in saturation.items() for i, r in enumerate(rs)}
    runs |= {f"{n} at {rate}/s": step for n, steps in rates.items() for rate, step in steps.items()}
    return {
        "saturation_median_per_s": medians,
        "ratio_engine_to_baseline": round(engine / baseline, 3) if engine and baseline else None,
        "engine_p99_ms_at_200": rates["engine"].get("200", {}).get("latency_ms", {}).get("p99"),
        **{label: {k: run[k] for k in RUN_FIGURES if k in run} for label, run in runs.items()},
    }


def status_counts(engine: Engine) -> dict[str, int]:
    """Orders per status, and how many are in flight and terminal."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status")).all()
    counts = {status: int(n) for status, n in rows}
    counts["in_flight"] = sum(counts.get(s, 0) for s in IN_FLIGHT)
    counts["terminal"] = sum(counts.get(s, 0) for s in TERMINAL)
    return counts


def outcomes(engine: Engine, accepted: dict[str, float]) -> dict[str, Any]:
    """What became of the accepted orders ({orderId: wall time of its 202}), read from one
    snapshot of every row and event (the worker may still be running)."""
    with engine.execution_options(isolation_level="REPEATABLE READ").begin() as conn:
        events, rows = conn.execute(EVENTS_SQL).all(), conn.execute(ORDERS_SQL).all()
    history: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for order_id, status, at in events:
        history[order_id].append((status, at))
    orders = {row[0]: row[1:] for row in rows}
    tally: dict[str, Any] = defaultdict(list)
    tally |= {"finals": Counter(), "failures": Counter(), "in_status": defaultdict(list)}
    for order_id, accepted_at in accepted.items():
        _add(tally, orders.get(order_id), history.get(order_id, []), accepted_at)
    finals, ms = tally["finals"], lambda key: summary(tally[key], 1)
    return {
        "final_status": dict(finals),
        "failures": dict(tally["failures"]),
        "retried_orders": len(tally["retried"]),
        "lost": sum(n for status, n in finals.items() if status not in TERMINAL),
        "terminal_at": tally["terminal_at"],
        "accept_to_terminal_ms": ms("to_terminal"),
        "accept_to_confirmed_ms": ms("to_confirmed"),
        "created_to_confirmed_ms": ms("created_to_confirmed"),
        "time_in_status_ms": {s: summary(v, 1) for s, v in tally["in_status"].items()},
    }


def _add(
    tally: dict[str, Any], order: Any, steps: list[tuple[str, float]], accepted: float
) -> None:
    status, attempts, created_at, failure_code = order or ("missing", 0, accepted, None)
    tally["finals"][status] += 1
    if attempts > 1:
        tally["retried"].append(1)
    if status == "failed":
        tally["failures"][failure_code or "unknown"] += 1
    for (s1, at1), (_, at2) in zip(steps, steps[1:], strict=False):
        tally["in_status"][s1].append((at2 - at1) * 1000)
    confirmed = next((at for s, at in steps if s == "confirmed"), None)
    if confirmed is not None:
        tally["to_confirmed"].append((confirmed - accepted) * 1000)
        tally["created_to_confirmed"].append((confirmed - created_at) * 1000)
    terminal = next((at for s, at in steps if s in TERMINAL), None)
    if terminal is not None:
        tally["terminal_at"].append(terminal)
        tally["to_terminal"].append((terminal - accepted) * 1000)


def end_to_end(
    engine: Engine, load: dict[str, Any], started: float, window_s: float, rate: int
) -> dict[str, Any]:
    """Throughput, accept → confirmed latency, time per status, retries and losses."""
    accepted = {r[3]: r[4] for r in load["records"] if r[2] == 202}
    result = outcomes(engine, accepted)
    http = open_loop(load, rate)
    done = result.pop("terminal_at")
    low, high = started + RAMP_S, started + window_s
    steady = sum(1 for t in done if low <= t < high) / (high - low) if high > low else None
    return {
        "offered_per_s": rate,
        "window_s": window_s,
        "accepted": len(accepted),
        "accepted_per_s": http["achieved_per_s"],
        "intake_latency_ms": http["latency_ms"],
        "http_errors": http["errors"],
        "completed": len(done),
        "steady_completed_per_s": None if steady is None else round(steady, 1),
        "overall_completed_per_s": round(len(done) / (max(done) - started), 1) if done else None,
        **result,
    }


def _exact(events: list[list[Any]]) -> bool:
    """Every seq from 1, each once, in order, ending with a terminal status."""
    seqs = [e[0] for e in events]
    return bool(events) and events[-1][1] in TERMINAL and seqs == list(range(1, len(seqs) + 1))


def streams(subscribers: list[dict[str, Any]]) -> dict[str, Any]:
    """Connections, exact streams, errors and close codes of WebSocket subscribers."""
    connected = [s for s in subscribers if s["connected"]]
    exact = sum(1 for s in subscribers if _exact(s["events"]))
    return {
        "streams": len(subscribers),
        "connected": len(connected),
        "streams_exact": exact,
        "streams_exact_pct": round(exact * 100 / len(subscribers), 1) if subscribers else None,
        "stream_errors": dict(Counter(s["error"] for s in subscribers if s["error"])),
        "close_codes": dict(Counter(str(s["closeCode"]) for s in subscribers)),
        "connect_ms": summary((s["connectMs"] for s in connected), 1),
    }


def live_updates(results: list[dict[str, Any]], tapped: dict[str, Any]) -> dict[str, Any]:
    """Streams, and the lag of every live event: `at` → client, split by the Redis tap's
    receipt into `at` → Redis (the worker commits and publishes) and Redis → client (the API's
    side, which the target judges). An event the client had before the tap read it shows the
    tap's own delay, by which Redis → client reads low."""
    subscribers = [s for result in results for s in result.get("subscribers", [])]
    published = {(order_id, seq): at for order_id, seq, at in tapped.get("received", [])}
    lags, worker_side, api_side = [], [], []
    for s in subscribers:
        for seq, _status, at, received_at in s["events"]:
            at_s = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            if at_s <= s["openedAt"]:
                continue  # replayed from history, not pushed live
            lags.append((received_at - at_s) * 1000)
            tap_at = published.get((s["orderId"], seq))
            if tap_at is not None:
                worker_side.append((tap_at - at_s) * 1000)
                api_side.append((received_at - tap_at) * 1000)
    return {
        **streams(subscribers),
        "live_events": len(lags),
        "lag_ms": summary(lags, 1),
        "lag_at_to_redis_ms": summary(worker_side, 1),
        "lag_redis_to_socket_ms": summary(api_side, 1),
        "tap_events": len(published),
        "tap_error": tapped.get("error"),
        "tap_after_client": sum(1 for v in api_side if v < 0),
        "load_generator_errors": [r["error"] for r in [*results, tapped] if "error" in r],
    }


def peer(engine: Engine, result: dict[str, Any]) -> dict[str, Any]:
    """Rate (terminal orders ÷ first post → last terminal event), accept → terminal latency,
    final statuses, and how many WebSocket streams were exact."""
    posts, started = result["posts"], result["started"]
    accepted = {r[3]: r[4] for r in posts if r[2] == 202}
    figures = outcomes(engine, accepted)
    done = figures.pop("terminal_at")
    span = max(done) - started if done else 0.0
    post_s = result["posted"] - started
    seen = [
        (s["events"][-1][3] - accepted[s["orderId"]]) * 1000
        for s in result["subscribers"]
        if s["events"] and s["events"][-1][1] in TERMINAL and s["orderId"] in accepted
    ]
    return {
        "posted": len(posts),
        "accepted": len(accepted),
        "http_errors": dict(Counter(str(r[2]) for r in posts if r[2] != 202)),
        "intake_latency_ms": summary((r[1] for r in posts if r[2] == 202), 1),
        "post_phase_s": round(post_s, 2),
        "posted_per_s": round(len(accepted) / post_s, 1) if post_s > 0 else None,
        "completed": len(done),
        "span_s": round(span, 2),
        "orders_per_s": round(len(done) / span, 1) if span else None,
        "accept_to_terminal_seen_ms": summary(seen, 1),
        **figures,
        **streams(result["subscribers"]),
    }
