"""TWAP slices on the real stack (`--preset positions`, part `twap`): how close to its schedule
each slice starts.

The stack is the one `make run` starts (worker, Celery beat sending the trigger evaluation,
which takes the TWAP steps, every TRIGGER_INTERVAL_MS; the localnet at the default latency).
`twap_parents` parents of `twap_slices` slices `twap_interval_s` apart are submitted through the
API, spread over one interval, and run to their end. A slice starts when the executor records
its `routing` step; its lag is that moment minus its due time (its first event's `dueAt`: the
parent's acceptance plus index × interval). The target: p99 within one slot (400 ms).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from bench import figures
from bench.loadgen import ENGINE_PATH, Api
from bench.phases import Run
from bench.plan import DEFAULT_LATENCY
from bench.triggers import evaluations

SLOT_MS = 400
# Each child of these parents: its due time, when it was created, when it started, its end.
_SLICES_SQL = text("""
SELECT c.slice_index, first.data ->> 'dueAt', extract(epoch FROM first.at)::float8,
       (SELECT extract(epoch FROM e.at)::float8 FROM order_events AS e
         WHERE e.order_id = c.id AND e.status = 'routing' ORDER BY e.seq LIMIT 1),
       c.status
  FROM orders AS c
  JOIN order_events AS first ON first.order_id = c.id AND first.seq = 1
 WHERE c.parent_id = ANY(CAST(:ids AS uuid[]))
""")
_PARENTS_SQL = text("SELECT status FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))")


def twap_slices(run: Run) -> dict[str, Any]:
    """Submit the parents, wait for their ends, and measure each slice's start against its due
    time; the evaluations' wall time (with the TWAP steps) from the worker's log."""
    plan, stack = run.plan, run.stack
    run.restart_worker(DEFAULT_LATENCY)
    log_path = stack.launcher.log_path("worker")
    offset = log_path.stat().st_size
    run.monitor.set_phase("twap")
    window = run.window()
    api = Api(stack.port, timeout_s=10)
    parents = [
        _submit(api, plan.twap_slices, plan.twap_interval_s, n)
        for n in _spread(plan.twap_parents, plan.twap_interval_s)
    ]
    deadline_s = plan.twap_slices * plan.twap_interval_s + 120
    done = run.wait(lambda: _finished(stack.db, parents), deadline_s)
    window.load_done()
    slices = _slices(stack.db, parents)
    steps = evaluations(log_path, offset)  # each evaluation takes the TWAP steps after it
    lag = figures.summary(s["start_lag_ms"] for s in slices if s["start_lag_ms"] is not None)
    result = {
        "parents": len(parents),
        "slices_per_parent": plan.twap_slices,
        "interval_s": plan.twap_interval_s,
        "all_ended": done,
        "parent_status": dict(Counter(_statuses(stack.db, parents))),
        "slice_status": dict(Counter(s["status"] for s in slices)),
        "start_lag_ms": lag,
        "created_ahead_ms": figures.summary(s["created_ahead_ms"] for s in slices),
        "evaluation_with_steps_ms": figures.summary((step * 1000 for step in steps), 1),
        "interval_ms": stack.settings["worker"].trigger_interval_ms,
        "latency": DEFAULT_LATENCY,
        "cost": window.finish(len(slices)),
    }
    p99 = lag["p99"]
    result["targets"] = [
        [
            "TWAP slices start within one slot of their schedule (p99)",
            "n/a" if p99 is None else f"{p99:.0f} ms (max {lag['max']:.0f} ms, n={lag['count']})",
            None if p99 is None else p99 <= SLOT_MS and done,
            "routing event − dueAt",
        ]
    ]
    run.idle()
    return result


def _spread(count: int, interval_s: float) -> Any:
    """0 … count-1, each returned after a pause that spreads them over one interval."""
    for n in range(count):
        yield n
        time.sleep(interval_s / max(count, 1))


def _submit(api: Api, slices: int, interval_s: int, n: int) -> str:
    body = {"type": "twap", "tokenIn": "SOL", "tokenOut": "USDC", "slices": slices}
    body |= {"amount": str(Decimal("0.1") * slices), "intervalS": interval_s}
    body |= {"slippageBps": 300, "clientOrderId": f"bench-twap-{n}"}
    status, reply = api("POST", ENGINE_PATH, body)
    assert status == 202, reply
    return str(reply["orderId"])


def _statuses(engine: Any, parents: list[str]) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(_PARENTS_SQL, {"ids": parents}).scalars())


def _finished(engine: Any, parents: list[str]) -> bool:
    return all(s in {"confirmed", "failed", "cancelled"} for s in _statuses(engine, parents))


def _slices(engine: Any, parents: list[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(_SLICES_SQL, {"ids": parents}).all()
    slices = []
    for index, due_text, created, started, status in rows:
        due = datetime.fromisoformat(due_text).timestamp()
        slices.append(
            {
                "index": index,
                "status": status,
                "created_ahead_ms": (due - created) * 1000,
                "start_lag_ms": None if started is None else (started - due) * 1000,
            }
        )
    return slices
