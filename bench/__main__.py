"""`python -m bench [--quick] [--preset peer | triggers]`: run the DESIGN §7 measurements and
write the report (bench/results/<timestamp>/report.md and result.json).

Each phase that runs orders end to end also reports its cost per order: CPU ms of each process
group (API, worker, scheduler, localnet, PostgreSQL, Redis, the load client), PostgreSQL
commits, rollbacks and connections opened, Redis commands (the top ones too).

`--preset peer` reproduces issue 10's side-by-side load: one client posts 1,000 orders back to
back over 50 connections and opens one WebSocket per order, default swap latency (2-3 s);
run it against the machine's servers (set DATABASE_URL and REDIS_URL), e.g.

    make bench BENCH_ARGS="--preset peer"
    make bench BENCH_ARGS="--preset peer --profile"   # + py-spy of the worker and the API

`--preset triggers` measures the trigger engine (issue 13): the evaluation's CPU over an idle
window with no waiting order and again with 100,000 waiting limit orders the market never
reaches, then 1,000 limit orders submitted through the API and crossed by one move of the
localnet's market, timed from the move to each order's `routing` event; with --quick, 10,000
waiting and 200 crossing.

Every server and load generator started here is stopped on the way out, whether the run
ends, fails or is interrupted with Ctrl-C; a partial run still writes what it measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import machine, phases, procs, report
from bench.monitor import Monitor
from bench.plan import DEFAULT_LATENCY, FULL, PRESETS, QUICK, ZERO_LATENCY, Plan
from bench.profile import Profiler
from bench.stack import Stack, StackError, free_port, monitor_groups

log = logging.getLogger("bench")
PHASES = ("intake", "celery", "e2e-zero", "e2e-default", "ws", "soak", "peer", "triggers")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for chatty in ("pgserver", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    plan = _plan(args)
    selected = _selected(args, plan)
    run_dir = Path(args.out) / datetime.now().strftime("%Y%m%d-%H%M%S")
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "raw").mkdir()
    _raise_file_limit()
    signal.signal(signal.SIGTERM, _interrupt)
    log.info("plan %s; results in %s", plan.name, run_dir)
    stack = Stack(run_dir, args.port or free_port(), args.wsgi_app)
    results: dict[str, Any] = {
        "plan": asdict(plan),
        "phases": {},
        "errors": [],
        "started_at": time.time(),
    }
    monitor = Monitor(monitor_groups(stack), flat=("postgres_bench",))
    profiler = Profiler(run_dir, args.profile)
    if args.profile and not profiler.enabled:
        log.warning("--profile needs py-spy (the bench extra); running without profiles")
    try:
        _run(stack, monitor, profiler, plan, results, selected, args)
    except KeyboardInterrupt:
        log.warning("interrupted: stopping everything and writing what was measured")
        results["interrupted"] = True
    except StackError as error:
        log.error("%s", error)
        results["errors"].append(str(error))
    except Exception:  # noqa: BLE001 - still stop everything and write what was measured
        log.exception("the run failed")
        results["errors"].append(traceback.format_exc(limit=6))
    finally:
        procs.stop_all()
        profiler.stop_all()
        monitor.stop()
        stack.close()
    results["finished_at"] = time.time()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["samples"] = monitor.samples
    paths = report.write(run_dir, results)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 1 if results["errors"] or results.get("interrupted") else 0


def _run(
    stack: Stack,
    monitor: Monitor,
    profiler: Profiler,
    plan: Plan,
    results: dict[str, Any],
    selected: set[str],
    args: argparse.Namespace,
) -> None:
    stack.start_servers()
    results["machine"] = machine.describe(stack.engine, stack.redis_url)
    monitor.start()
    worker_overrides = (
        {"WORKER_CONCURRENCY": str(args.worker_concurrency)} if args.worker_concurrency else {}
    )
    run = phases.Run(
        stack,
        monitor,
        plan,
        stack.run_dir,
        tag=stack.run_dir.name,
        profiler=profiler,
        worker_overrides=worker_overrides,
    )
    results["settings"] = {"commands": run.commands, "env": stack.process_env}
    run.commands["localnet"] = stack.start_localnet(ZERO_LATENCY)
    run.commands["api"] = stack.start_api()
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "intake": lambda: phases.intake(run),
        "celery": lambda: _with_worker(run, lambda: phases.celery_ceiling(run)),
        "e2e-zero": lambda: phases.end_to_end(run, "zero", ZERO_LATENCY),
        "e2e-default": lambda: phases.end_to_end(
            run, "default", DEFAULT_LATENCY, run.plan.e2e_default_rate
        ),
        "ws": lambda: phases.live_updates(run),
        "soak": lambda: phases.soak(run, DEFAULT_LATENCY),
        "peer": lambda: phases.peer(run),
        "triggers": lambda: phases.triggers(run),
    }
    for name, step in steps.items():
        if name not in selected:
            continue
        log.info("phase %s", name)
        began = time.time()
        try:
            if not stack.pids("localnet"):  # an earlier phase failed with it down
                run.commands["localnet"] = stack.start_localnet(ZERO_LATENCY)
            if not stack.pids("api"):  # an earlier phase failed with the API down
                run.commands["api"] = stack.start_api()
            results["phases"][name] = {**step(), "began": began, "ended": time.time()}
        except Exception as error:  # noqa: BLE001 - one failed phase must not lose the others
            log.error("phase %s failed: %s", name, error)
            results["errors"].append(f"{name}: {traceback.format_exc(limit=4)}")
            stack.stop("worker", grace_s=5)


def _with_worker(run: phases.Run, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    run.stack.stop("worker", grace_s=5)
    run.stack.reset()
    run.commands["worker"] = run.stack.start_worker(run.worker_overrides)
    try:
        return measure()
    finally:
        run.stack.stop("worker", grace_s=5)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short run (about 3 minutes) for development"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="peer: issue 10's load only (1,000 orders posted back to back over 50 connections, "
        "one WebSocket per order, default swap latency; --peer-orders/--peer-connections "
        "change it); with --quick, 200 orders. triggers: the trigger engine only (100,000 "
        "waiting limit orders, 1,000 crossed at once; --triggers-waiting/--triggers-crossing "
        "change it); with --quick, 10,000 and 200",
    )
    parser.add_argument("--peer-orders", type=int, help="orders the peer phase posts")
    parser.add_argument("--peer-connections", type=int, help="its HTTP connections")
    parser.add_argument("--triggers-waiting", type=int, help="waiting orders, triggers phase")
    parser.add_argument("--triggers-crossing", type=int, help="orders crossed at once, triggers")
    parser.add_argument("--only", help=f"comma-separated phases to run, of: {','.join(PHASES)}")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results"),
        help="results folder (a timestamped run folder is made inside)",
    )
    parser.add_argument("--port", type=int, help="API port (default: a free one)")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        help="WORKER_CONCURRENCY for the worker (default: the environment's)",
    )
    parser.add_argument(
        "--e2e-rate",
        type=int,
        help="offered orders/s end to end, both e2e phases (default: 200 at zero latency, "
        "100 at the default latency)",
    )
    parser.add_argument("--e2e-window", type=float, help="end-to-end window, seconds")
    parser.add_argument("--ws-subscribers", type=int, help="concurrent WebSocket subscribers")
    parser.add_argument(
        "--soak-minutes",
        type=float,
        help="add a worker-memory soak of this length (DESIGN §7 asks 10)",
    )
    parser.add_argument(
        "--redis-tap",
        action="store_true",
        help="also count, with a MONITOR tap, the commands sent to the stack's own Redis "
        "databases, split into sent and run by scripts (costs Redis and the bench about 1 ms "
        "of CPU per order; without it the server-wide INFO commandstats counts alone)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the API and the worker with py-spy (extra intake runs; the worker "
        "during e2e-zero, one API process during the WebSocket phase; the worker and every "
        "API process during the peer phase): flame stacks, a speedscope file and a text "
        "top-N of functions by own CPU in the results folder",
    )
    parser.add_argument(
        "--wsgi-app",
        default="order_engine.wsgi:app",
        help="the app gunicorn serves (it must register /bench/baseline)",
    )
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.preset:
        preset = PRESETS[args.preset][0]
        plan = (
            preset
            if not args.quick
            else preset.with_overrides(
                name=f"{preset.name} (quick)",
                peer_orders=QUICK.peer_orders,
                triggers_waiting=QUICK.triggers_waiting,
                triggers_crossing=QUICK.triggers_crossing,
                triggers_idle_s=QUICK.triggers_idle_s,
                triggers_deadline_s=QUICK.triggers_deadline_s,
            )
        )
    return plan.with_overrides(
        e2e_rate=args.e2e_rate,
        e2e_default_rate=args.e2e_rate,
        redis_tap=args.redis_tap or None,
        e2e_window_s=args.e2e_window,
        ws_subscribers=args.ws_subscribers,
        soak_minutes=args.soak_minutes,
        peer_orders=args.peer_orders,
        peer_connections=args.peer_connections,
        triggers_waiting=args.triggers_waiting,
        triggers_crossing=args.triggers_crossing,
    )


def _selected(args: argparse.Namespace, plan: Plan) -> set[str]:
    default = set(PRESETS[args.preset][1]) if args.preset else set(PHASES)
    chosen = set(args.only.split(",")) if args.only else default
    unknown = chosen - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    if not plan.soak_minutes:
        chosen.discard("soak")
    return chosen


def _raise_file_limit() -> None:
    """Thousands of sockets: the children inherit the raised soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 8192:
        log.warning(
            "open-file limit %s (soft was %s) may be too low for the WebSocket run", hard, soft
        )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
