"""The measurements, one function each; each returns a JSON-able dict for the report.

Order of a run (`bench.__main__`): intake with the worker stopped, end to end at zero and at the
default venue latency, live updates over WebSockets, an optional worker soak, the peer load, the
trigger engine (`bench.triggers`), the position-keeping orders (`bench.positions`) and a
contested chain (`bench.contested`). Every phase leaves the stack as it found it: tables and
queues empty. The venue latencies are the
localnet's settings: a phase that needs others restarts it, with the worker stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import figures, loadgen
from bench.loadgen import ENGINE_PATH
from bench.monitor import FLUSH_S, Monitor, Window
from bench.plan import DEFAULT_LATENCY, ZERO_LATENCY, Plan
from bench.profile import Profiler
from bench.stack import Stack
from order_engine.live.events import EVENTS_CHANNEL

ENDPOINTS = {"baseline": "/bench/baseline", "engine": ENGINE_PATH}
WARMUP_S, WARMUP_DRAIN_S = 2.0, 15.0


@dataclass
class Run:
    """What every phase needs: the stack, the sampler, the plan and where to write."""

    stack: Stack
    monitor: Monitor
    plan: Plan
    run_dir: Path
    profiler: Profiler

    def child(self, label: str, target: str, *args: Any) -> loadgen.Child:
        return loadgen.Child(target, args, self.run_dir / "raw" / f"{label}.json").start()

    def http(self, label: str, kind: str, **spec: Any) -> dict[str, Any]:
        """Run one HTTP load generator (`open_loop` or `closed_loop`) and wait for it."""
        spec = {"port": self.stack.port, "tag": f"{self.run_dir.name}-{label}", **spec}
        result = self.child(label, f"bench.loadgen.{kind}", spec).result(spec["duration_s"] + 60)
        if "error" in result:
            raise RuntimeError(f"load generator {label} failed: {result['error']}")
        return result

    def idle(self) -> None:
        """The worker (and the scheduler) stopped, the data emptied."""
        self.stack.stop("worker", grace_s=5)
        self.stack.reset()

    def restart_worker(self, latency: dict[str, str]) -> None:
        """Idle, the localnet at `latency`, the worker and the scheduler started again."""
        self.idle()
        self.stack.ensure_localnet(latency)
        self.stack.start_worker()

    def window(self) -> Window:
        window = Window(self.monitor, self.stack)
        window.start()
        return window

    def wait(
        self, done: Callable[[], bool], timeout_s: float, each: Callable[[], Any] = bool
    ) -> bool:
        """Poll once a second (calling `each()` first) until `done()`; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while each() or not done():
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)
        return True

    def in_flight(self) -> int:
        return int(figures.status_counts(self.stack.db).get("in_flight", 0))

    def warm_up(self, label: str) -> None:
        """A few orders first: pools seeded, connections opened, code paths warmed; then the
        warm-up's statistics reach pg_stat_database before a window opens."""
        self.monitor.set_phase(f"e2e_{label}_warmup")
        spec = {"path": ENGINE_PATH, "rate": 10, "duration_s": WARMUP_S, "connections": 4}
        self.http(f"e2e-{label}-warmup", "open_loop", **spec)
        self.wait(lambda: self.in_flight() == 0, WARMUP_DRAIN_S)
        time.sleep(FLUSH_S)


def intake(run: Run) -> dict[str, Any]:
    """POST /api/orders/execute beside POST /bench/baseline: saturation, then fixed rates,
    the worker stopped (the baseline's no-ops would cost it far less than real orders), the
    two alternating on data reset between steps: the same table sizes and machine drift."""
    plan, stack = run.plan, run.stack
    run.idle()
    run.monitor.set_phase("intake")
    closed = {"concurrency": plan.saturation_concurrency, "duration_s": plan.saturation_s}
    for name, path in ENDPOINTS.items():
        run.http(f"intake-warmup-{name}", "closed_loop", path=path, concurrency=8, duration_s=2)
    saturation: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
    for repeat in range(plan.saturation_repeats):
        for name, path in ENDPOINTS.items():
            result = run.http(f"saturation-{name}-{repeat}", "closed_loop", path=path, **closed)
            saturation[name].append(figures.closed_loop(result))
            stack.reset()
    rates: dict[str, dict[str, Any]] = {name: {} for name in ENDPOINTS}
    for rate in plan.intake_rates:
        for name, path in ENDPOINTS.items():
            spec = {"rate": rate, "duration_s": plan.intake_step_s}
            spec["connections"] = plan.intake_connections
            result = run.http(f"rate-{name}-{rate}", "open_loop", path=path, **spec)
            rates[name][str(rate)] = figures.open_loop(result, rate)
            stack.reset()
    return figures.intake(saturation, rates)


def end_to_end(
    run: Run, label: str, latency: dict[str, str], rate: int, window_s: float
) -> dict[str, Any]:
    """Offer `rate` orders/s for `window_s`, drain, then read every order's events: latency
    from the client's 202 (its wall clock) to the `confirmed` event's `at` (the worker's)."""
    stack, phase = run.stack, f"e2e_{label}"
    run.restart_worker(latency)
    run.warm_up(label)
    run.monitor.set_phase(phase)
    window = run.window()
    spec = {"port": stack.port, "tag": f"{run.run_dir.name}-{label}", "path": ENGINE_PATH}
    spec |= {"rate": rate, "duration_s": window_s, "connections": run.plan.e2e_connections}
    started = time.time()
    child = run.child(f"e2e-{label}", "bench.loadgen.open_loop", spec)
    if label == "zero":
        run.profiler.start("worker-e2e-zero", stack.pids("worker"), window_s)
    run.wait(lambda: not child.process.is_alive(), window_s + 60)
    result = child.result(5)
    if "error" in result:
        raise RuntimeError(f"load generator e2e-{label} failed: {result['error']}")
    run.monitor.set_phase(f"{phase}_drain")
    drained = run.wait(lambda: run.in_flight() == 0, run.plan.e2e_drain_s)
    window.load_done()
    summary = figures.end_to_end(stack.db, result, started, window_s, rate)
    run.monitor.set_phase(f"{phase}_flush")
    summary |= {
        "cost": window.finish(summary["completed"]),
        "latency": latency,
        "drained": drained,
        "worker_settings": stack.process_env["worker"],
        "profile": run.profiler.finish("worker-e2e-zero"),
    }
    run.idle()
    return summary


def live_updates(run: Run) -> dict[str, Any]:
    """N WebSocket subscribers on N pending orders, all open before the worker starts, so
    every event after `pending` is pushed live from its publish. Each gevent API process takes
    at most API_WORKER_CONNECTIONS sockets; several share them unevenly, hence the margin."""
    plan, stack, n = run.plan, run.stack, run.plan.ws_subscribers
    run.idle()
    stack.ensure_localnet(ZERO_LATENCY)
    workers = stack.settings["api"].api_workers
    per_process = math.ceil(n / workers * (1.1 if workers > 1 else 1.0)) + 100
    api_settings = {"WEB_CONCURRENCY": str(workers)}
    if per_process > stack.settings["api"].api_worker_connections:
        api_settings["API_WORKER_CONNECTIONS"] = str(per_process)
    stack.start_api(api_settings)
    api = stack.settings["api"]
    run.monitor.set_phase("ws_create")
    spec = {"path": ENGINE_PATH, "concurrency": 16, "count": n, "duration_s": 120}
    order_ids = [
        r[3] for r in run.http("ws-orders", "closed_loop", **spec)["records"] if r[2] == 202
    ]
    run.monitor.set_phase("ws_connect")
    connect_started = time.time()
    count, children = max(1, plan.ws_processes), []
    for index in range(count):
        event, ids = loadgen.new_event(), order_ids[index::count]
        spec = {"port": stack.port, "order_ids": ids, "deadline_s": plan.ws_deadline_s}
        target = "bench.wsclient.subscribe_many"
        children.append((event, run.child(f"ws-{index}", target, spec, event)))
    # The Redis tap (`bench.wsclient.tap`) and the event that stops it once the sockets are done
    # (left to stop at the last terminal event, a tap that missed one would wait on).
    ready, stop = loadgen.new_event(), loadgen.new_event()
    spec = {"redis_url": stack.redis_url, "channel": EVENTS_CHANNEL, "order_ids": order_ids}
    spec["deadline_s"] = plan.ws_deadline_s
    tap = run.child("ws-tap", "bench.wsclient.tap", spec, ready, stop)
    ready.wait(30)
    for event, _ in children:
        event.wait(90)
    connected_s = time.time() - connect_started
    run.monitor.set_phase("ws_stream")
    run.profiler.start("api-ws", stack.child_pids("api"), min(30, plan.ws_deadline_s))
    stack.start_worker(wait_ready=False)
    results = loadgen.wait_all([child for _, child in children], plan.ws_deadline_s + 30)
    stop.set()
    summary = figures.live_updates(results, tap.result(30))
    summary |= {
        "profile": run.profiler.finish("api-ws"),
        "requested": n,
        "orders_created": len(order_ids),
        "connect_phase_s": round(connected_s, 1),
        "api_settings": {**api_settings, "worker_connections": api.api_worker_connections},
        "api_worker_class": api.api_worker_class,
    }
    run.idle()
    stack.start_api()  # back to the default settings for what follows
    return summary


def peer(run: Run) -> dict[str, Any]:
    """The peer load (`bench.wsclient.peer`) at the default swap latency. Nothing here touches
    the servers while it runs: the cost window is the client's, first post to last event."""
    plan, stack = run.plan, run.stack
    run.restart_worker(DEFAULT_LATENCY)
    run.warm_up("peer")
    run.monitor.set_phase("peer")
    window = run.window()
    spec = {"port": stack.port, "tag": f"{run.run_dir.name}-peer", "orders": plan.peer_orders}
    spec |= {"connections": plan.peer_connections, "deadline_s": plan.peer_deadline_s}
    child = run.child("peer", "bench.wsclient.peer", spec)
    run.profiler.start("worker-peer", stack.pids("worker"))
    run.profiler.start("api-peer", stack.pids("api"), children=True)
    result = child.result(plan.peer_deadline_s + 60)
    window.load_done()
    profiles = [run.profiler.finish(label) for label in ("worker-peer", "api-peer")]
    if "error" in result:
        raise RuntimeError(f"the peer load client failed: {result['error']}")
    run.monitor.set_phase("peer_flush")
    summary = figures.peer(stack.db, result)
    summary |= {
        "cost": window.finish(summary["completed"]),
        "orders_requested": plan.peer_orders,
        "connections": plan.peer_connections,
        "latency": DEFAULT_LATENCY,
        "worker_settings": stack.process_env["worker"],
        "api_settings": stack.process_env["api"],
        "servers": stack.server_kind,
        "profiles": [p for p in profiles if p] or None,
    }
    run.idle()
    return summary


STEPS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "intake": intake,
    "e2e-zero": lambda run: end_to_end(
        run, "zero", ZERO_LATENCY, run.plan.e2e_rate, run.plan.e2e_window_s
    ),
    "e2e-default": lambda run: end_to_end(
        run, "default", DEFAULT_LATENCY, run.plan.e2e_default_rate, run.plan.e2e_window_s
    ),
    "ws": live_updates,
    # The worker's memory over a long run at the target rate (`--soak-minutes`).
    "soak": lambda run: end_to_end(
        run, "soak", DEFAULT_LATENCY, run.plan.e2e_default_rate, run.plan.soak_minutes * 60
    ),
    "peer": peer,
}
