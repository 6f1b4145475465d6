"""The measurements, one function each; each returns a JSON-able dict for the report.

Order of a run (`bench.__main__`): intake with the worker stopped, the bare Celery round trip,
end to end at zero and at the default venue latency, live updates over WebSockets, an optional
worker soak, the peer load and the trigger engine (`bench.triggers`). Every phase leaves the
stack as it found it: tables and queues empty. The venue latencies are the localnet's settings:
a phase that needs others restarts it, with the worker stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import counters, figures, procs
from bench.loadgen import ENGINE_PATH
from bench.monitor import Monitor
from bench.plan import DEFAULT_LATENCY, ZERO_LATENCY, Plan
from bench.profile import Profiler
from bench.stack import Stack
from order_engine.live.events import EVENTS_CHANNEL
from order_engine.ops.launch import child_settings

ENDPOINTS = {"baseline": "/bench/baseline", "engine": ENGINE_PATH}
WARMUP_S = 2.0
WARMUP_DRAIN_S = 15.0


@dataclass
class Run:
    """What every phase needs: the stack, the sampler, the plan and where to write."""

    stack: Stack
    monitor: Monitor
    plan: Plan
    run_dir: Path
    profiler: Profiler
    worker_overrides: dict[str, str] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)

    def child(self, label: str, target: str, *args: Any) -> procs.Child:
        return procs.Child(target, args, self.run_dir / "raw" / f"{label}.json").start()

    def http(self, label: str, kind: str, **spec: Any) -> dict[str, Any]:
        """Run one HTTP load generator (`open_loop` or `closed_loop`) and wait for it."""
        spec = {"port": self.stack.port, "tag": f"{self.run_dir.name}-{label}", **spec}
        result = self.child(label, f"bench.loadgen.{kind}", spec).result(spec["duration_s"] + 60)
        if "error" in result:
            raise RuntimeError(f"load generator {label} failed: {result['error']}")
        return result

    def restart_worker(self, latency: dict[str, str]) -> None:
        """Worker stopped, data emptied, the localnet at `latency`, the worker and the
        scheduler started again."""
        self.stack.stop("worker", grace_s=5)
        self.stack.reset()
        self.localnet(latency)
        self.commands["worker"] = self.stack.start_worker(self.worker_overrides)

    def localnet(self, latency: dict[str, str]) -> None:
        """The localnet at these latencies (restarted if it runs others; the worker is stopped)."""
        argv = self.stack.ensure_localnet(latency)
        if argv is not None:
            self.commands["localnet"] = argv

    def window(self) -> counters.Window:
        window = counters.Window(self.monitor, self.stack, tap=self.plan.redis_tap)
        window.start()
        return window

    def wait_sampling(
        self, done: Callable[[], bool], timeout_s: float, samples: list[dict[str, Any]]
    ) -> bool:
        """Poll once a second until `done()`; record the orders' states each time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            samples.append(figures.status_counts(self.stack.db))
            if done():
                return True
            time.sleep(1.0)
        return False

    def in_flight(self) -> int:
        return int(figures.status_counts(self.stack.db).get("in_flight", 0))

    def warm_up(self, label: str) -> None:
        """A few orders first: pools seeded, connections opened, code paths warmed; then the
        warm-up's statistics reach pg_stat_database before a window opens."""
        self.monitor.set_phase(f"e2e_{label}_warmup")
        spec = {"path": ENGINE_PATH, "rate": 10, "duration_s": WARMUP_S, "connections": 4}
        self.http(f"e2e-{label}-warmup", "open_loop", **spec)
        self.wait_sampling(lambda: self.in_flight() == 0, WARMUP_DRAIN_S, [])
        time.sleep(counters.FLUSH_S)


# -- intake and the bare Celery round trip ---------------------------------------------------


def intake(run: Run) -> dict[str, Any]:
    """POST /api/orders/execute beside POST /bench/baseline: saturation, then fixed rates.

    The worker is stopped, so both endpoints get the machine without a worker executing
    what they queue (the baseline's no-ops would cost the worker far less than real orders).
    Baseline and engine alternate, and the data is reset between steps, so both see the
    same table sizes and the same drift of a shared machine.
    """
    plan, stack = run.plan, run.stack
    stack.stop("worker", grace_s=5)
    stack.reset()
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
    profiles = {}
    for name, path in ENDPOINTS.items() if run.profiler.enabled else ():
        # Extra saturation runs with py-spy on one gunicorn worker (not in the figures).
        label = f"api-{name}-saturation"
        run.profiler.start(label, stack.child_pids("api"), plan.saturation_s)
        run.http(f"profile-{name}", "closed_loop", path=path, **closed)
        profiles[label] = run.profiler.finish(label)
        stack.reset()
    rates: dict[str, dict[str, Any]] = {name: {} for name in ENDPOINTS}
    for rate in plan.intake_rates:
        for name, path in ENDPOINTS.items():
            spec = {"rate": rate, "duration_s": plan.intake_step_s}
            spec["connections"] = plan.intake_connections
            result = run.http(f"rate-{name}-{rate}", "open_loop", path=path, **spec)
            rates[name][str(rate)] = figures.open_loop(result, rate)
            stack.reset()
    return {**figures.intake(saturation, rates), "profiles": profiles}


def celery_ceiling(run: Run) -> dict[str, Any]:
    """bench.noop through the product's worker: the framework's ceiling for tasks/s."""
    run.stack.stop("worker", grace_s=5)
    run.stack.reset()
    run.commands["worker"] = run.stack.start_worker(run.worker_overrides)
    try:
        run.monitor.set_phase("celery_noop")
        env = run.stack.env()
        spec = {
            "env": {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")},
            "count": run.plan.noop_tasks,
            "timeout_s": 120,
        }
        return run.child("celery-noop", "bench.producer.noop_roundtrip", spec).result(180)
    finally:
        run.stack.stop("worker", grace_s=5)
        run.stack.reset()


# -- end to end --------------------------------------------------------------------------------


def end_to_end(
    run: Run, label: str, latency: dict[str, str], rate: int, window_s: float
) -> dict[str, Any]:
    """Offer `rate` orders/s for `window_s`, drain, then read every order's events.

    Latency is from the moment the client got its 202 (wall clock, recorded by the load
    generator) to the `confirmed` event's `at` (wall clock, written by the worker).
    """
    stack, phase = run.stack, f"e2e_{label}"
    run.restart_worker(latency)
    run.warm_up(label)
    run.monitor.set_phase(phase)
    window, samples = run.window(), []
    spec = {"port": stack.port, "tag": f"{run.run_dir.name}-{label}", "path": ENGINE_PATH}
    spec |= {"rate": rate, "duration_s": window_s, "connections": run.plan.e2e_connections}
    started = time.time()
    child = run.child(f"e2e-{label}", "bench.loadgen.open_loop", spec)
    if label == "zero":
        run.profiler.start("worker-e2e-zero", stack.pids("worker"), window_s)
    run.wait_sampling(lambda: not child.process.is_alive(), window_s + 60, samples)
    result = child.result(5)
    if "error" in result:
        raise RuntimeError(f"load generator e2e-{label} failed: {result['error']}")
    run.monitor.set_phase(f"{phase}_drain")
    drained = run.wait_sampling(lambda: run.in_flight() == 0, run.plan.e2e_drain_s, samples)
    window.load_done()
    summary = figures.end_to_end(stack.db, result, started, window_s, rate)
    run.monitor.set_phase(f"{phase}_flush")
    summary |= {
        **figures.lock_waits(samples),
        "cost": window.finish(summary["completed"]),
        "latency": latency,
        "drained": drained,
        "worker_settings": stack.process_env["worker"],
        "localnet_settings": stack.process_env["localnet"],
        "littles_law": _capacity(stack, summary),
        "profile": run.profiler.finish("worker-e2e-zero") if label == "zero" else None,
    }
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
        run.localnet(latency)
        chain = run.stack.localnet_settings
        assert chain is not None
        concurrency = child_settings(run.stack.env(run.worker_overrides)).worker_concurrency
        swap, rpc = chain.swap_latency, chain.rpc_latency
        task_ms = (swap.low_ms + swap.high_ms + rpc.low_ms + rpc.high_ms) / 2
        rate = max(1, int(0.8 * concurrency / max(task_ms / 1000, 0.05)))
    return end_to_end(run, "soak", latency, rate, run.plan.soak_minutes * 60)


def _capacity(stack: Stack, summary: dict[str, Any]) -> dict[str, float] | None:
    """Little's law: worker threads ÷ seconds a task holds one = the most orders/s possible.

    A task holds its thread from the claim to `confirmed`. The `routing` event is written
    after the quote, which the worker computes from the pool accounts it reads in one RPC
    call: that call's latency is taken from the localnet's setting, the rest from the events.
    """
    held = summary["time_in_status_ms"]
    steps = ("routing", "building", "submitted")
    if not all(s in held and held[s]["mean"] is not None for s in steps):
        return None
    chain = stack.localnet_settings
    quote_ms = (chain.rpc_latency.low_ms + chain.rpc_latency.high_ms) / 2 if chain else 0.0
    task_s = (quote_ms + sum(held[s]["mean"] for s in steps)) / 1000
    concurrency = stack.settings["worker"].worker_concurrency
    return {
        "concurrency": concurrency,
        "task_s": round(task_s, 3),
        "max_per_s": round(concurrency / task_s, 1) if task_s else 0.0,
    }


# -- WebSockets: many subscribers, and the peer load -----------------------------------------


def live_updates(run: Run) -> dict[str, Any]:
    """N WebSocket subscribers on N pending orders; then the worker runs them all.

    The worker is stopped while the orders are created and the sockets connect, so all N are
    open at once and every event after `pending` is pushed live from the worker's publish.
    gevent: each API process takes at most API_WORKER_CONNECTIONS sockets at once; several
    share the subscribers unevenly (gunicorn's accepts), hence the margin.
    """
    plan, stack, n = run.plan, run.stack, run.plan.ws_subscribers
    stack.stop("worker", grace_s=5)
    stack.reset()
    run.localnet(ZERO_LATENCY)
    workers = stack.settings["api"].api_workers
    per_process = math.ceil(n / workers * (1.1 if workers > 1 else 1.0)) + 100
    api_settings = {"WEB_CONCURRENCY": str(workers)}
    if per_process > stack.settings["api"].api_worker_connections:
        api_settings["API_WORKER_CONNECTIONS"] = str(per_process)
    run.commands["api_ws"] = stack.start_api(api_settings)
    api = stack.settings["api"]
    run.monitor.set_phase("ws_create")
    spec = {"path": ENGINE_PATH, "concurrency": 16, "count": n, "duration_s": 120}
    created = run.http("ws-orders", "closed_loop", **spec)
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
    summary = figures.live_updates(results, tap.result(30), worker_started)
    summary |= {
        "profile": run.profiler.finish("api-ws"),
        "requested": n,
        "orders_created": len(order_ids),
        "connect_phase_s": round(connected_s, 1),
        "api_settings": {**api_settings, "worker_connections": api.api_worker_connections},
        "api_worker_class": api.api_worker_class,
        "api_threads_peak": _peak_threads(run.monitor, "ws_stream"),
    }
    stack.stop("worker", grace_s=5)
    stack.reset()
    run.commands["api"] = stack.start_api()  # back to the default settings for what follows
    return summary


def _start_subscribers(run: Run, order_ids: list[str]) -> tuple[list[procs.Child], list[Any]]:
    count = max(1, run.plan.ws_processes)
    children, events = [], []
    for index in range(count):
        event = procs.new_event()
        spec = {"port": run.stack.port, "order_ids": order_ids[index::count]}
        spec["deadline_s"] = run.plan.ws_deadline_s
        children.append(run.child(f"ws-{index}", "bench.wsclient.subscribe_many", spec, event))
        events.append(event)
    return children, events


def _start_tap(run: Run, order_ids: list[str]) -> tuple[procs.Child, Any]:
    """The Redis tap (`bench.wsclient.tap`) and the event that stops it once the sockets are
    done (left to stop at the last terminal event, a tap that missed one would wait on)."""
    ready, stop = procs.new_event(), procs.new_event()
    spec = {"redis_url": run.stack.redis_url, "channel": EVENTS_CHANNEL, "order_ids": order_ids}
    spec["deadline_s"] = run.plan.ws_deadline_s
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


def peer(run: Run) -> dict[str, Any]:
    """The peer load: one client posts N orders back to back over C connections and opens one
    WebSocket per order (`bench.peer`), at the default swap latency, worker and scheduler
    running. Nothing in this process touches the servers while the load runs (no status
    polls): the cost window is the client's run, from the first post to the last terminal event.
    """
    plan, stack = run.plan, run.stack
    run.restart_worker(DEFAULT_LATENCY)
    run.warm_up("peer")
    run.monitor.set_phase("peer")
    window = run.window()
    spec = {"port": stack.port, "tag": f"{run.run_dir.name}-peer", "orders": plan.peer_orders}
    spec |= {"connections": plan.peer_connections, "deadline_s": plan.peer_deadline_s}
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
    summary |= {
        "cost": window.finish(summary["completed"]),
        "orders_requested": plan.peer_orders,
        "connections": plan.peer_connections,
        "latency": DEFAULT_LATENCY,
        "worker_settings": stack.process_env["worker"],
        "api_settings": stack.process_env["api"],
        "localnet_settings": stack.process_env["localnet"],
        "servers": stack.server_kind,
        "profiles": {k: v for k, v in profiles.items() if v},
    }
    stack.stop("worker", grace_s=5)
    stack.reset()
    return summary


STEPS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "intake": intake,
    "celery": celery_ceiling,
    "e2e-zero": lambda run: end_to_end(
        run, "zero", ZERO_LATENCY, run.plan.e2e_rate, run.plan.e2e_window_s
    ),
    "e2e-default": lambda run: end_to_end(
        run, "default", DEFAULT_LATENCY, run.plan.e2e_default_rate, run.plan.e2e_window_s
    ),
    "ws": live_updates,
    "soak": lambda run: soak(run, DEFAULT_LATENCY),
    "peer": peer,
}
