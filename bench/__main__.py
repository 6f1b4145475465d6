"""`python -m bench [--quick] [--preset peer | triggers | positions | contested]`: measure the
engine against its targets and write bench/results/<timestamp>/report.md and result.json.

Each phase that runs orders end to end also reports its cost per order (`bench.monitor`).
`--preset peer`: one client posts 1,000 orders back to back over 50 connections and opens one
WebSocket per order, at the default swap latency (2-3 s). `--preset triggers`: the trigger
engine (`bench.triggers`); `--preset positions`: stops, OCO brackets and trailing stops, TWAP
slices against their schedule and the export of a million fills (`bench.positions`).
`--preset contested`: 1,000 market orders on a congested chain with the searcher on, once per
landing strategy (fixed fee public, auto fee public, auto fee + bundle; `bench.contested`).
With --quick: 200 peer orders; 10,000 waiting and 200 crossing (150); 10 TWAPs of 4 slices;
100,000 fills; 200 contested orders per strategy.
Every server and load generator started here is stopped on the way out, whether the run ends,
fails or is interrupted; a partial run still writes what it measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from bench import phases, report
from bench.contested import contested
from bench.monitor import describe_machine
from bench.plan import FULL, PRESETS, QUICK, ZERO_LATENCY, Plan
from bench.positions import PARTS
from bench.profile import Profiler
from bench.stack import session
from bench.triggers import triggers

log = logging.getLogger("bench")
STEPS = {**phases.STEPS, "triggers": triggers, **PARTS, "contested": contested}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan, selected = _plan(args)
    _raise_file_limit()
    results: dict[str, Any] = {"plan": asdict(plan), "phases": {}, "errors": []}
    results["started_at"] = time.time()
    with session(args.out) as (stack, monitor):
        log.info("plan %s; results in %s", plan.name, stack.run_dir)
        profiler = Profiler(stack.run_dir, args.profile)
        if args.profile and not profiler.enabled:
            log.warning("--profile needs py-spy (the bench extra); running without profiles")
        try:
            run = phases.Run(stack, monitor, plan, stack.run_dir, profiler)
            _run(run, results, selected)
        except KeyboardInterrupt:
            log.warning("interrupted: stopping everything and writing what was measured")
            results["interrupted"] = True
        except Exception:  # noqa: BLE001 - still stop everything and write what was measured
            log.exception("the run failed")
            results["errors"].append(traceback.format_exc(limit=6))
        finally:
            profiler.stop_all()
    results["finished_at"] = time.time()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["samples"] = monitor.samples
    paths = report.write(stack.run_dir, results)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 1 if results["errors"] or results.get("interrupted") else 0


def _run(run: phases.Run, results: dict[str, Any], selected: set[str]) -> None:
    stack = run.stack
    stack.start_servers()
    results["machine"] = describe_machine(stack.db, stack.redis_url)
    run.monitor.start()
    results["settings"] = {"commands": stack.launcher.commands, "env": stack.process_env}
    for name, step in ((n, s) for n, s in STEPS.items() if n in selected):
        log.info("phase %s", name)
        began = time.time()
        try:
            if not stack.pids("localnet"):  # the first phase, or an earlier one failed
                stack.start_localnet(ZERO_LATENCY)
            if not stack.pids("api"):
                stack.start_api()
            results["phases"][name] = {**step(run), "began": began, "ended": time.time()}
        except Exception as error:  # noqa: BLE001 - one failed phase must not lose the others
            log.error("phase %s failed: %s", name, error)
            results["errors"].append(f"{name}: {traceback.format_exc(limit=4)}")
            stack.stop("worker", grace_s=5)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="a short run for development")
    add("--preset", choices=sorted(PRESETS), help="run one phase alone (see above)")
    add("--only", help=f"comma-separated phases to run, of: {','.join(STEPS)}")
    add("--peer-orders", type=int, help="orders the peer phase posts")
    add("--peer-connections", type=int, help="its HTTP connections")
    add("--triggers-waiting", type=int, help="waiting orders, triggers phase")
    add("--triggers-crossing", type=int, help="orders crossed at once, triggers phase")
    add("--positions-waiting", type=int, help="waiting stops, brackets, trailing stops")
    add("--positions-crossing", type=int, help="of those, crossed at once, positions phase")
    add("--twap-parents", type=int, help="TWAP parents, twap part of --preset positions")
    add("--export-rows", type=int, help="fills seeded and exported, export part")
    add("--e2e-rate", type=int, help="offered orders/s, both e2e phases (default 200, 100)")
    add("--e2e-window", type=float, dest="e2e_window_s", help="end-to-end window, seconds")
    add("--ws-subscribers", type=int, help="concurrent WebSocket subscribers")
    add("--soak-minutes", type=float, help="add a worker-memory soak this long (target: 10)")
    add("--out", default=str(Path(__file__).parent / "results"), help="results folder")
    add("--contested-orders", type=int, help="market orders per strategy, contested preset")
    add("--contested-rate", type=int, help="their offered orders/s")
    add("--contested-strategies", help="comma-separated, of: fixed,auto,bundle (default all)")
    add("--contested-warm-slots", type=int, help="congested slots before the orders (default "
        "20; 0: the orders meet the congestion's onset)")  # fmt: skip
    add("--profile", action="store_true", help="also record py-spy profiles of the worker "
        "(e2e-zero), an API process (ws), the worker and the API processes (peer)")  # fmt: skip
    return parser


def _plan(args: argparse.Namespace) -> tuple[Plan, set[str]]:
    """The plan (quick or full, a preset's name) and the phases selected."""
    plan = QUICK if args.quick else FULL
    if args.preset:
        plan = plan.with_overrides(name=args.preset + (" (quick)" if args.quick else ""))
    # The options are named as the plan's fields; --e2e-rate sets both end-to-end rates.
    plan = plan.with_overrides(**{f.name: getattr(args, f.name, None) for f in fields(Plan)})
    plan = plan.with_overrides(e2e_default_rate=args.e2e_rate)
    chosen = set(PRESETS[args.preset]) if args.preset else set(STEPS)
    chosen = set(args.only.split(",")) if args.only else chosen
    if unknown := chosen - set(STEPS):
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    if not plan.soak_minutes:
        chosen.discard("soak")
    return plan, chosen


def _raise_file_limit() -> None:
    """Thousands of sockets: the children inherit the raised soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 8192:
        log.warning(
            "open-file limit %s (soft was %s) may be too low for the WebSockets", hard, soft
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
