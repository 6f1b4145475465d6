"""The measurements, one function each; each returns a JSON-able dict for the report.

Order of a run (see `bench.__main__`): intake with the worker stopped, the bare Celery round
trip, end to end at zero and at default venue latency, live updates over WebSockets, an
optional worker soak, issue 10's peer load and the trigger engine (issue 13). Every phase
leaves the stack as it found it: tables and queues empty.
The venue latencies are the localnet's settings: a phase that needs others restarts it, with
the worker stopped.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import counters, figures, procs, stats
from bench import triggers as book
from bench.loadgen import BASELINE_PATH, ENGINE_PATH
from bench.monitor import Monitor
from bench.plan import DEFAULT_LATENCY, ZERO_LATENCY, Plan
from bench.profile import Profiler
from bench.stack import Stack, child_settings
from order_engine.live.events import EVENTS_CHANNEL

ENDPOINTS = {"baseline": BASELINE_PATH, "engine": ENGINE_PATH}
WARMUP_S = 2.0
WARMUP_DRAIN_S = 15.0
# The trigger phase: the first evaluations after a start or after the book is written (the
# worker's chain resources, cold index pages) are left out of the idle windows; the crossing
# orders wait at 1.2x the SOL/USDC price and the market is moved to 1.5x.
TRIGGER_SETTLE_S = 5.0
TRIGGER_LIMIT_FACTOR, TRIGGER_MOVE_FACTOR = Decimal("1.2"), Decimal("1.5")
TRIGGER_PAIR = ("SOL", "USDC")
# Celery's trace line for each task run (`--loglevel INFO`): its wall time.
_EVALUATION_LINE = re.compile(r"orders\.evaluate_triggers\[[^\]]+\] succeeded in ([0-9.e-]+)s")


@dataclass
class Run:
    """What every phase needs: the stack, the sampler, the plan and where to write."""

    stack: Stack
    monitor: Monitor
    plan: Plan
    run_dir: Path
    tag: str
    profiler: Profiler
    worker_overrides: dict[str, str] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)

    def child(self, label: str, target: str, *args: Any) -> procs.Child:
        return procs.Child(target, args, self.run_dir / "raw" / f"{label}.json").start()

    def http(self, label: str, kind: str, **spec: Any) -> dict[str, Any]:
        """Run one HTTP load generator (`open_loop` or `closed_loop`) and wait for it."""
        spec = {"port": self.stack.port, "tag": f"{self.tag}-{label}", **spec}
        timeout_s = spec["duration_s"] + 60
        result = self.child(label, f"bench.loadgen.{kind}", spec).result(timeout_s)
        if "error" in result:
            raise RuntimeError(f"load generator {label} failed: {result['error']}")
        return result


# -- 1. intake ------------------------------------------------------------------------------


def intake(run: Run) -> dict[str, Any]:
    """POST /api/orders/execute beside POST /bench/baseline: saturation, then fixed rates.

    The worker is stopped, so both endpoints get the machine without a worker executing
    what they queue (the baseline's no-ops would cost the worker far less than real orders).
    Baseline and engine alternate, and the data is reset between steps, so both see the
    same table sizes and the same drift of a shared machine.
    """
    run.stack.stop("worker", grace_s=5)
    run.stack.reset()
    plan = run.plan
    run.monitor.set_phase("intake")
    for endpoint, path in ENDPOINTS.items():
        run.http(
            f"intake-warmup-{endpoint}",
            "closed_loop",
            path=path,
            concurrency=8,
            duration_s=WARMUP_S,
        )
    saturation: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
    for repeat in range(plan.saturation_repeats):
        for endpoint, path in ENDPOINTS.items():
            result = run.http(
                f"saturation-{endpoint}-{repeat}",
                "closed_loop",
                path=path,
                concurrency=plan.saturation_concurrency,
                duration_s=plan.saturation_s,
            )
            saturation[endpoint].append(figures.closed_loop_summary(result))
            run.stack.reset()
    profiles = _profile_intake(run) if run.profiler.enabled else {}
    open_loop: dict[str, dict[str, Any]] = {name: {} for name in ENDPOINTS}
    for rate in plan.intake_rates:
        for endpoint, path in ENDPOINTS.items():
            result = run.http(
                f"rate-{endpoint}-{rate}",
                "open_loop",
                path=path,
                rate=rate,
                duration_s=plan.intake_step_s,
                connections=plan.intake_connections,
            )
            open_loop[endpoint][str(rate)] = figures.open_loop_summary(result, rate)
            run.stack.reset()
    return {**figures.intake_result(saturation, open_loop, plan), "profiles": profiles}


def _profile_intake(run: Run) -> dict[str, Any]:
    """Extra saturation runs with py-spy on one gunicorn worker (not in the figures above)."""
    profiles = {}
    for endpoint, path in ENDPOINTS.items():
        label = f"api-{endpoint}-saturation"
        run.profiler.start(label, run.stack.child_pids("api"), run.plan.saturation_s)
        run.http(
            f"profile-{endpoint}",
            "closed_loop",
            path=path,
            concurrency=run.plan.saturation_concurrency,
            duration_s=run.plan.saturation_s,
        )
        profiles[label] = run.profiler.finish(label)
        run.stack.reset()
    return profiles


# -- 2. the bare Celery round trip -----------------------------------------------------------


def celery_ceiling(run: Run) -> dict[str, Any]:
    """bench.noop through the product's worker: the framework's ceiling for tasks/s."""
    run.monitor.set_phase("celery_noop")
    env = run.stack.env()
    spec = {
        "env": {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")},
        "count": run.plan.noop_tasks,
        "timeout_s": 120,
    }
    result = run.child("celery-noop", "bench.producer.noop_roundtrip", spec).result(180)
    run.stack.reset()
    return result


# -- 3. end to end ---------------------------------------------------------------------------


def end_to_end(
    run: Run,
    label: str,
    latency: dict[str, str],
    rate: int | None = None,
    window_s: float | None = None,
) -> dict[str, Any]:
    """Offer `rate` orders/s for `window_s`, drain, then read every order's events.

    Latency is from the moment the client got its 202 (wall clock, recorded by the load
    generator) to the `confirmed` event's `at` (wall clock, written by the worker).
    """
    plan, stack = run.plan, run.stack
    rate, window_s = rate or plan.e2e_rate, window_s or plan.e2e_window_s
    stack.stop("worker", grace_s=5)
    stack.reset()
    _localnet(run, latency)
    run.commands["worker"] = stack.start_worker(run.worker_overrides)
    settings = stack.process_env["worker"]
    _warm_up(run, label)
    time.sleep(counters.FLUSH_S)  # the warm-up's statistics reach pg_stat_database first
    phase = f"e2e_{label}"
    run.monitor.set_phase(phase)
    window = counters.Window(run.monitor, stack, tap=run.plan.redis_tap)
    window.start()
    timeline: list[dict[str, Any]] = []
    spec = {
        "port": stack.port,
        "tag": f"{run.tag}-{label}",
        "path": ENGINE_PATH,
        "rate": rate,
        "duration_s": window_s,
        "connections": plan.e2e_connections,
    }
    started = time.time()
    child = run.child(f"e2e-{label}", "bench.loadgen.open_loop", spec)
    profile_label = f"worker-e2e-{label}"
    if label == "zero":
        run.profiler.start(profile_label, stack.pids("worker"), window_s)
    _wait_sampling(lambda: not child.process.is_alive(), window_s + 60, run, timeline)
    result = child.result(5)
    if "error" in result:
        raise RuntimeError(f"load generator e2e-{label} failed: {result['error']}")
    accepted = {r[3]: r[4] for r in result["records"] if r[2] == 202}
    run.monitor.set_phase(f"{phase}_drain")
    drained = _wait_sampling(lambda: _in_flight(stack) == 0, plan.e2e_drain_s, run, timeline)
    window.load_done()
    summary = figures.end_to_end(stack.db, accepted, result, started, window_s, rate, timeline)
    run.monitor.set_phase(f"{phase}_flush")
    summary.update(
        cost=window.finish(summary["completed"]),
        latency=latency,
        drained=drained,
        worker_settings=settings,
        localnet_settings=stack.process_env["localnet"],
        littles_law=_capacity(stack, summary),
        profile=run.profiler.finish(profile_label),
    )
    stack.stop("worker", grace_s=5)
    stack.reset()
    return summary


def soak(run: Run, latency: dict[str, str]) -> dict[str, Any]:
    """A long end-to-end run at a rate the worker can sustain, for its memory over time.

    The default rate is 80 % of what the worker's threads allow at that latency (Little's
    law), so the queue stays short and the memory reflects work, not an ever-growing backlog.
    """
    rate = run.plan.soak_rate
    if not rate:
        _localnet(run, latency)
        chain = run.stack.localnet_settings
        assert chain is not None
        concurrency = child_settings(run.stack.env(run.worker_overrides)).worker_concurrency
        swap, rpc = chain.swap_latency, chain.rpc_latency
        task_ms = (swap.low_ms + swap.high_ms + rpc.low_ms + rpc.high_ms) / 2
        rate = max(1, int(0.8 * concurrency / max(task_ms / 1000, 0.05)))
    return end_to_end(run, "soak", latency, rate, run.plan.soak_minutes * 60)


def peer(run: Run) -> dict[str, Any]:
    """Issue 10's load: one client posts N orders back to back over C connections and opens
    one WebSocket per order (`bench.peer`), at the default swap latency, worker and scheduler
    running. Reports the rate, accept → terminal latency, exact streams and the cost per order.

    Nothing in this process touches the servers while the load runs (no status polls): the
    client ends when every stream has; the cost window is its run, from the first post to the
    last terminal event.
    """
    plan, stack = run.plan, run.stack
    _restart_worker(run, DEFAULT_LATENCY)
    _warm_up(run, "peer")
    time.sleep(counters.FLUSH_S)  # the warm-up's statistics reach pg_stat_database first
    run.monitor.set_phase("peer")
    window = counters.Window(run.monitor, stack, tap=run.plan.redis_tap)
    window.start()
    spec = {
        "port": stack.port,
        "tag": f"{run.tag}-peer",
        "orders": plan.peer_orders,
        "connections": plan.peer_connections,
        "deadline_s": plan.peer_deadline_s,
    }
    child = run.child("peer", "bench.peer.run", spec)
    if run.profiler.enabled:
        run.profiler.start("worker-peer", stack.pids("worker"))
        run.profiler.start("api-peer", stack.pids("api"), subprocesses=True)
    result = child.result(plan.peer_deadline_s + 60)
    window.load_done()
    profiles = {label: run.profiler.finish(label) for label in ("worker-peer", "api-peer")}
    if "error" in result:
        raise RuntimeError(f"the peer load client failed: {result['error']}")
    run.monitor.set_phase("peer_flush")
    summary = figures.peer(stack.db, result)
    summary.update(
        cost=window.finish(summary["completed"]),
        orders_requested=plan.peer_orders,
        connections=plan.peer_connections,
        latency=DEFAULT_LATENCY,
        worker_settings=stack.process_env["worker"],
        api_settings=stack.process_env["api"],
        localnet_settings=stack.process_env["localnet"],
        servers=stack.server_kind,
        profiles={k: v for k, v in profiles.items() if v},
    )
    stack.stop("worker", grace_s=5)
    stack.reset()
    return summary


def _capacity(stack: Stack, summary: dict[str, Any]) -> dict[str, float] | None:
    """Little's law: worker threads ÷ seconds a task holds one = the most orders/s possible.

    A task holds its thread from the claim to `confirmed`. The `routing` event is written
    after the quote, which the worker computes from the pool accounts it reads in one RPC
    call: that call's latency is taken from the localnet's setting, the rest from the events.
    """
    held = summary["time_in_status_ms"]
    if not all(
        s in held and held[s]["mean"] is not None for s in ("routing", "building", "submitted")
    ):
        return None
    settings = stack.settings["worker"]
    chain = stack.localnet_settings
    quote_ms = (chain.rpc_latency.low_ms + chain.rpc_latency.high_ms) / 2 if chain else 0.0
    task_s = (quote_ms + sum(held[s]["mean"] for s in ("routing", "building", "submitted"))) / 1000
    concurrency = settings.worker_concurrency
    return {
        "concurrency": concurrency,
        "task_s": round(task_s, 3),
        "max_per_s": round(concurrency / task_s, 1) if task_s else 0.0,
    }


def _restart_worker(run: Run, latency: dict[str, str]) -> None:
    """Worker stopped, data emptied, the localnet at `latency`; the worker and the scheduler
    started again."""
    run.stack.stop("worker", grace_s=5)
    run.stack.reset()
    _localnet(run, latency)
    run.commands["worker"] = run.stack.start_worker(run.worker_overrides)
    run.commands["scheduler"] = run.stack.commands.get("scheduler", [])


def _localnet(run: Run, latency: dict[str, str]) -> None:
    """The localnet at these latencies (restarted if it runs others; the worker is stopped)."""
    argv = run.stack.ensure_localnet(latency)
    if argv is not None:
        run.commands["localnet"] = argv


def _warm_up(run: Run, label: str) -> None:
    """A few orders first: pools seeded, connections opened, code paths warmed."""
    run.monitor.set_phase(f"e2e_{label}_warmup")
    run.http(
        f"e2e-{label}-warmup",
        "open_loop",
        path=ENGINE_PATH,
        rate=10,
        duration_s=WARMUP_S,
        connections=4,
    )
    _wait_sampling(lambda: _in_flight(run.stack) == 0, WARMUP_DRAIN_S, run, [])


def _in_flight(stack: Stack) -> int:
    return figures.status_counts(stack.db).get("in_flight", 0)


def _wait_sampling(
    done: Callable[[], bool], timeout_s: float, run: Run, timeline: list[dict[str, Any]]
) -> bool:
    """Poll once a second until `done()`; record the queue and the orders' states each time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = figures.status_counts(run.stack.db)
        timeline.append({"t": time.time(), "queue": run.stack.queue_length(), **counts})
        if done():
            return True
        time.sleep(1.0)
    return False


# -- 4. live updates -------------------------------------------------------------------------


def live_updates(run: Run) -> dict[str, Any]:
    """N WebSocket subscribers on N pending orders; then the worker runs them all.

    The worker is stopped while the orders are created and the sockets connect, so all N are
    open at once and every event after `pending` is pushed live from the worker's publish.
    """
    plan, stack = run.plan, run.stack
    n = plan.ws_subscribers
    # The API as configured (WEB_CONCURRENCY). gevent: each process takes at most
    # API_WORKER_CONNECTIONS sockets at once; several share the subscribers unevenly
    # (gunicorn's accepts), hence the margin.
    settings = child_settings(stack.env())
    workers = settings.api_workers
    per_process = math.ceil(n / workers * (1.1 if workers > 1 else 1.0)) + 100
    stack.stop("worker", grace_s=5)
    stack.reset()
    _localnet(run, ZERO_LATENCY)
    api_settings = {"WEB_CONCURRENCY": str(workers)}
    if per_process > settings.api_worker_connections:
        api_settings["API_WORKER_CONNECTIONS"] = str(per_process)
    run.commands["api_ws"] = stack.start_api(api_settings)
    run.monitor.set_phase("ws_create")
    created = run.http(
        "ws-orders", "closed_loop", path=ENGINE_PATH, concurrency=16, count=n, duration_s=120
    )
    order_ids = [r[3] for r in created["records"] if r[2] == 202]
    run.monitor.set_phase("ws_connect")
    connect_started = time.time()
    children, events = _start_subscribers(run, order_ids)
    tap, tap_stop = _start_tap(run, order_ids)
    for event in events:
        event.wait(90)
    connected_s = time.time() - connect_started
    run.monitor.set_phase("ws_stream")
    worker_started = time.time()
    run.profiler.start("api-ws", stack.child_pids("api"), min(30, plan.ws_deadline_s))
    stack.start_worker(run.worker_overrides, wait_ready=False)
    results = procs.wait_all(children, plan.ws_deadline_s + 30)
    tap_stop.set()
    tapped = tap.result(30)
    summary = figures.live_updates(results, tapped, worker_started)
    summary["profile"] = run.profiler.finish("api-ws")
    summary.update(
        requested=n,
        orders_created=len(order_ids),
        connect_phase_s=round(connected_s, 1),
        api_settings={
            **api_settings,
            "worker_connections": stack.settings["api"].api_worker_connections,
        },
        api_worker_class=stack.settings["api"].api_worker_class,
        api_threads_peak=_peak_threads(run.monitor, "ws_stream"),
        worker_latency=ZERO_LATENCY,
    )
    stack.stop("worker", grace_s=5)
    stack.reset()
    run.commands["api"] = stack.start_api()  # back to the default settings for what follows
    return summary


def _start_subscribers(run: Run, order_ids: list[str]) -> tuple[list[procs.Child], list[Any]]:
    count = max(1, run.plan.ws_processes)
    children, events = [], []
    for index in range(count):
        event = procs.new_event()
        spec = {
            "port": run.stack.port,
            "order_ids": order_ids[index::count],
            "deadline_s": run.plan.ws_deadline_s,
        }
        children.append(run.child(f"ws-{index}", "bench.wsclient.subscribe_many", spec, event))
        events.append(event)
    return children, events


def _start_tap(run: Run, order_ids: list[str]) -> tuple[procs.Child, Any]:
    """The Redis tap (`bench.wsclient.tap`) and the event that stops it once the sockets are
    done. Left to stop at the last terminal event, a tap that missed one (or counted someone
    else's) outlived the 30 s wait for it and was killed with all it had."""
    ready, stop = procs.new_event(), procs.new_event()
    spec = {
        "redis_url": run.stack.redis_url,
        "channel": EVENTS_CHANNEL,
        "order_ids": order_ids,
        "deadline_s": run.plan.ws_deadline_s,
    }
    child = run.child("ws-tap", "bench.wsclient.tap", spec, ready, stop)
    ready.wait(30)
    return child, stop


def _peak_threads(monitor: Monitor, phase: str) -> list[int]:
    """Threads of each gunicorn process at the busiest sample: how the sockets spread."""
    best: list[int] = []
    for sample in monitor.phase_samples(phase):
        threads = sorted((p[3] for p in sample["groups"]["api"]["procs"]), reverse=True)
        if sum(threads) > sum(best):
            best = threads
    return best


# -- 6. the trigger engine (issue 13) ----------------------------------------------------------


def triggers(run: Run) -> dict[str, Any]:
    """The trigger engine on the real stack: worker, Celery beat (one evaluation every
    TRIGGER_INTERVAL_MS on the control queue), the localnet at the default latency.

    1. An idle window with no waiting order: the CPU each group spends on evaluations that
       find nothing (the pools' read, one range query per pair, Celery's own work per task).
    2. N waiting limit orders written by SQL (`bench.triggers.insert_waiting`, the bench API
       key's account, limits 2-12x the market), VACUUM ANALYZE, the same window again: what
       the book adds, per evaluation and in % of one core.
    3. M limit orders for SOL->USDC submitted through the API at 1.2x the price (they wait),
       then one `localnet_move` to 1.5x: from the move (and from each order's trigger event)
       to its `routing` event, the evaluations that triggered them, and their outcomes.
    """
    plan, stack = run.plan, run.stack
    _restart_worker(run, DEFAULT_LATENCY)
    run.monitor.set_phase("triggers_settle")
    time.sleep(TRIGGER_SETTLE_S)
    empty = _idle_window(run, "triggers_idle_empty")
    run.monitor.set_phase("triggers_book")
    began = time.monotonic()
    prices = book.best_prices(stack.localnet_rpc("localnet_status")["pools"])
    book.insert_waiting(stack.db, prices, plan.triggers_waiting, stack.account_id)
    written_s = time.monotonic() - began
    time.sleep(TRIGGER_SETTLE_S)
    waiting = _idle_window(run, "triggers_idle_waiting")
    waiting.update(
        orders=plan.triggers_waiting, pair_directions=len(prices), written_s=round(written_s, 1)
    )
    price = _best_price(stack, *TRIGGER_PAIR)
    try:
        crossing = _cross(run, price)
    finally:
        stack.stop("worker", grace_s=5)
        # Back to the price the phase found (the market walks on from there).
        stack.localnet_rpc("localnet_move", {"pair": "/".join(TRIGGER_PAIR), "price": str(price)})
        stack.reset()
    return {
        "idle_empty": empty,
        "idle_waiting": waiting,
        "crossing": crossing,
        "cost": crossing.pop("cost"),
        "interval_ms": stack.settings["worker"].trigger_interval_ms,
        "latency": DEFAULT_LATENCY,
        "worker_settings": stack.process_env["worker"],
        "localnet_settings": stack.process_env["localnet"],
        "servers": stack.server_kind,
    }


def _idle_window(run: Run, phase: str) -> dict[str, Any]:
    """Every group's CPU over `triggers_idle_s`, per evaluation the worker ran meanwhile (its
    log's trace lines) and in % of one core; none may trigger."""
    log_path = run.run_dir / "logs" / "worker.log"
    offset = log_path.stat().st_size
    run.monitor.set_phase(phase)
    before = run.monitor.read()
    time.sleep(run.plan.triggers_idle_s)
    after = run.monitor.read()
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        logged = log_file.read().decode(errors="replace")
    runs = [float(m) for m in _EVALUATION_LINE.findall(logged)]
    seconds = after["t"] - before["t"]
    cpu_ms = {g: (after["cpu_s"][g] - before["cpu_s"][g]) * 1000 for g in after["cpu_s"]}
    cpu_ms["engine"] = cpu_ms["worker"] + cpu_ms["scheduler"]
    # Without trace lines (LOG_LEVEL above INFO), beat's rate stands in for the count.
    interval_s = run.stack.settings["worker"].trigger_interval_ms / 1000
    n = len(runs) or max(1, round(seconds / interval_s))
    return {
        "window_s": round(seconds, 1),
        "evaluations": n,
        "evaluations_counted": bool(runs),
        "evaluation_wall_ms": stats.summary((r * 1000 for r in runs), 1),
        "cpu_ms": {g: round(v, 1) for g, v in cpu_ms.items()},
        "cpu_ms_per_evaluation": {g: round(v / n, 2) for g, v in cpu_ms.items()},
        "cpu_pct_of_core": {g: round(v / 10 / seconds, 2) for g, v in cpu_ms.items()},
        "triggered": figures.triggered_count(run.stack.db),
    }


def _best_price(stack: Stack, token_in: str, token_out: str) -> Decimal:
    prices = book.best_prices(stack.localnet_rpc("localnet_status")["pools"])
    return next(p for tin, tout, p in prices if (tin, tout) == (token_in, token_out))


def _cross(run: Run, price: Decimal) -> dict[str, Any]:
    """M limit orders through the API, then one move of the market across all of them."""
    plan, stack = run.plan, run.stack
    limit = (price * TRIGGER_LIMIT_FACTOR).quantize(Decimal("0.0001"))
    run.monitor.set_phase("triggers_submit")
    submitted = run.http(
        "triggers-submit",
        "closed_loop",
        path=ENGINE_PATH,
        concurrency=16,
        count=plan.triggers_crossing,
        duration_s=120,
        order={"type": "limit", "limitPrice": str(limit)},
    )
    records = submitted["records"]
    order_ids = [r[3] for r in records if r[2] == 202]
    waiting_before = figures.crossing_counts(stack.db, order_ids)["waiting"]
    time.sleep(TRIGGER_SETTLE_S)
    run.monitor.set_phase("triggers_cross")
    window = counters.Window(run.monitor, stack, tap=run.plan.redis_tap)
    window.start()
    target = (price * TRIGGER_MOVE_FACTOR).quantize(Decimal("0.0001"))
    moved_at = time.time()
    stack.localnet_rpc("localnet_move", {"pair": "/".join(TRIGGER_PAIR), "price": str(target)})
    deadline_s = plan.triggers_deadline_s
    routed = _wait_sampling(
        lambda: figures.crossing_counts(stack.db, order_ids)["routed"] >= len(order_ids),
        deadline_s,
        run,
        [],
    )
    run.monitor.set_phase("triggers_drain")
    drained = _wait_sampling(
        lambda: figures.crossing_counts(stack.db, order_ids)["terminal"] >= len(order_ids),
        deadline_s,
        run,
        [],
    )
    window.load_done()
    result = figures.triggers_crossing(stack.db, order_ids, moved_at)
    run.monitor.set_phase("triggers_flush")
    result.update(
        requested=plan.triggers_crossing,
        accepted=len(order_ids),
        http_errors=dict(Counter(str(r[2]) for r in records if r[2] != 202)),
        intake_latency_ms=stats.summary((r[1] for r in records if r[2] == 202), 1),
        waiting_before_move=waiting_before,
        price_before=str(price),
        limit_price=str(limit),
        moved_to=str(target),
        moved_at=moved_at,
        all_routed=routed,
        drained=drained,
        cost=window.finish(len(order_ids)),
    )
    return result
