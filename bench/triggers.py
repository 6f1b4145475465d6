"""The trigger engine on the real stack (`--preset triggers`): what evaluating the waiting
book costs, and how fast orders crossed at once are triggered.

The stack is the one `make run` starts: the worker, Celery beat sending
`orders.evaluate_triggers` every TRIGGER_INTERVAL_MS to the control queue, the localnet at the
default latency. `insert_waiting` writes the book: N waiting limit orders across the listed
pairs, each with its first `pending` event, all with limits 2-12x the pair's best price (so a
market that random-walks a few percent never reaches them), in one SQL statement.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench import figures
from bench.loadgen import ENGINE_PATH
from bench.phases import Run
from bench.plan import DEFAULT_LATENCY
from bench.stack import Stack
from order_engine.models import DEFAULT_ACCOUNT_ID

# The first evaluations after a start or after the book is written (the worker's chain
# resources, cold index pages) are left out of the idle windows; the crossing orders wait at
# 1.2x the SOL/USDC price and the market is moved to 1.5x.
SETTLE_S = 5.0
LIMIT_FACTOR, MOVE_FACTOR = Decimal("1.2"), Decimal("1.5")
PAIR = ("SOL", "USDC")
# Celery's trace line for each task run (`--loglevel INFO`): its wall time.
EVALUATION_LINE = re.compile(r"orders\.evaluate_triggers\[[^\]]+\] succeeded in ([0-9.e-]+)s")

# The crossing orders: how many wait, are routed, are terminal; their events and outcomes.
ANY_ID = "ANY(CAST(:ids AS uuid[]))"
COUNTS_SQL = text(
    "SELECT count(*) FILTER (WHERE o.waiting), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM "
    "order_events e WHERE e.order_id = o.id AND e.status = 'routing')), count(*) FILTER (WHERE "
    f"o.status IN ('confirmed', 'failed', 'cancelled')) FROM orders o WHERE o.id = {ANY_ID}"
)
STEPS_SQL = text(
    "SELECT order_id::text, status, extract(epoch FROM at)::float8, data ? 'triggered', data ? "
    f"'rearmed' FROM order_events WHERE order_id = {ANY_ID} ORDER BY order_id, seq"
)
FINALS_SQL = text(f"SELECT status, failure_code FROM orders WHERE id = {ANY_ID}")
# Pair i % P gets the order; its limit steps through 2x, 2.01x, ... 11.99x the pair's best price.
_WAITING_BOOK_SQL = """
WITH pairs AS (
    SELECT * FROM unnest(%(ins)s::text[], %(outs)s::text[], %(prices)s::numeric[])
           WITH ORDINALITY AS p(tin, tout, price, n)
), new_orders AS (
    INSERT INTO orders (
        id, account_id, type, status, token_in, token_out, amount_in, slippage_bps,
        last_seq, attempts, deliveries, created_at, updated_at, dispatched_at,
        limit_price, trigger_price, waiting
    )
    SELECT gen_random_uuid(), %(account)s, 'limit', 'pending', p.tin, p.tout, 1, 50,
           1, 0, 0, now(), now(), now(), l.price, l.price, true
      FROM generate_series(0, %(count)s - 1) AS g(i)
      JOIN pairs AS p ON p.n = mod(g.i, %(pairs)s) + 1
     CROSS JOIN LATERAL (
           SELECT round(p.price * (2 + mod(g.i / %(pairs)s, 1000) / 100.0), 12) AS price
           ) AS l
    RETURNING id, limit_price
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, 1, 'pending', 0,
       jsonb_build_object('type', 'limit',
                          'waitingFor', jsonb_build_object('limitPrice', limit_price::text)),
       now()
  FROM new_orders
"""


def write_book(engine: Engine, sql: str, prices: list[tuple[str, str, Decimal]],
               **params: Any) -> None:  # fmt: skip
    """A book written by one SQL statement over `prices` ((tokenIn, tokenOut, best price)),
    then VACUUM (ANALYZE), so the planner sees the book's size and no autovacuum of the new rows
    runs inside a measurement."""
    params |= {"ins": [p[0] for p in prices], "outs": [p[1] for p in prices]}
    params |= {"prices": [p[2] for p in prices], "pairs": len(prices)}
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, params)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM (ANALYZE) orders, order_events"
        )


def best_prices(pools: list[dict[str, Any]]) -> list[tuple[str, str, Decimal]]:
    """Each listed pair, both ways, with its best venue's mid price (tokenOut per tokenIn),
    from the localnet's `localnet_status` pools."""
    best: dict[tuple[str, str], Decimal] = {}
    for pool in pools:
        if not pool.get("mid") or Decimal(pool["mid"]) <= 0:
            continue
        mid = Decimal(pool["mid"])
        x, y = pool["tokenX"], pool["tokenY"]
        for pair, price in (((x, y), mid), ((y, x), 1 / mid)):
            best[pair] = max(price, best.get(pair, Decimal(0)))
    return [(tin, tout, price) for (tin, tout), price in sorted(best.items())]


def sol_price(stack: Stack) -> Decimal:
    pools = best_prices(stack.localnet_rpc("localnet_status")["pools"])
    return next(p for tin, tout, p in pools if (tin, tout) == PAIR)


def move(stack: Stack, price: Decimal) -> None:
    stack.localnet_rpc("localnet_move", {"pair": "/".join(PAIR), "price": str(price)})


def evaluations(log_path: Path, offset: int) -> list[float]:
    """The wall time (s) of each trigger evaluation the worker's log traced after `offset`."""
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        return [float(m) for m in EVALUATION_LINE.findall(log_file.read().decode(errors="replace"))]


def triggers(run: Run) -> dict[str, Any]:
    """An idle window with no waiting order (evaluations that find nothing), the same with N
    waiting orders (what the book adds, per evaluation and in % of one core), then M limit
    orders through the API crossed by one `localnet_move`: move → `routing`, and outcomes."""
    plan, stack = run.plan, run.stack
    run.restart_worker(DEFAULT_LATENCY)
    run.monitor.set_phase("triggers_settle")
    time.sleep(SETTLE_S)
    empty = idle_window(run, "triggers_idle_empty")
    run.monitor.set_phase("triggers_book")
    began = time.monotonic()
    prices = best_prices(stack.localnet_rpc("localnet_status")["pools"])
    account = stack.account_id or DEFAULT_ACCOUNT_ID
    write_book(stack.db, _WAITING_BOOK_SQL, prices, count=plan.triggers_waiting, account=account)
    written_s = time.monotonic() - began
    time.sleep(SETTLE_S)
    waiting = idle_window(run, "triggers_idle_waiting")
    waiting |= {"orders": plan.triggers_waiting, "pair_directions": len(prices)}
    waiting["written_s"] = round(written_s, 1)
    price = sol_price(stack)
    try:
        crossing = _cross(run, price)
    finally:
        run.idle()
        move(stack, price)  # back to the price the phase found (the market walks on from there)
    return {
        "idle_empty": empty,
        "idle_waiting": waiting,
        "crossing": crossing,
        "cost": crossing.pop("cost"),
        "interval_ms": stack.settings["worker"].trigger_interval_ms,
        "latency": DEFAULT_LATENCY,
        "worker_settings": stack.process_env["worker"],
        "servers": stack.server_kind,
    }


def idle_window(run: Run, phase: str) -> dict[str, Any]:
    """Every group's CPU over `triggers_idle_s`, per evaluation the worker ran meanwhile (its
    log's trace lines) and in % of one core; none may trigger."""
    log_path = run.stack.launcher.log_path("worker")
    offset = log_path.stat().st_size
    run.monitor.set_phase(phase)
    before = run.monitor.read()
    time.sleep(run.plan.triggers_idle_s)
    after = run.monitor.read()
    runs = evaluations(log_path, offset)
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
        "evaluation_wall_ms": figures.summary((r * 1000 for r in runs), 1),
        "cpu_ms_per_evaluation": {g: round(v / n, 2) for g, v in cpu_ms.items()},
        "cpu_pct_of_core": {g: round(v / 10 / seconds, 2) for g, v in cpu_ms.items()},
        "triggered": triggered_count(run.stack.db),
    }


def _cross(run: Run, price: Decimal) -> dict[str, Any]:
    """M limit orders through the API, then one move of the market across all of them."""
    plan, stack = run.plan, run.stack
    limit = (price * LIMIT_FACTOR).quantize(Decimal("0.0001"))
    run.monitor.set_phase("triggers_submit")
    spec = {"path": ENGINE_PATH, "concurrency": 16, "count": plan.triggers_crossing}
    spec |= {"duration_s": 120, "order": {"type": "limit", "limitPrice": str(limit)}}
    records = run.http("triggers-submit", "closed_loop", **spec)["records"]
    order_ids = [r[3] for r in records if r[2] == 202]
    waiting_before = crossing_counts(stack.db, order_ids)["waiting"]
    time.sleep(SETTLE_S)
    run.monitor.set_phase("triggers_cross")
    window = run.window()
    target = (price * MOVE_FACTOR).quantize(Decimal("0.0001"))
    moved_at = time.time()
    move(stack, target)

    def reached(what: str) -> bool:
        return crossing_counts(stack.db, order_ids)[what] >= len(order_ids)

    routed = run.wait(lambda: reached("routed"), plan.triggers_deadline_s)
    run.monitor.set_phase("triggers_drain")
    drained = run.wait(lambda: reached("terminal"), plan.triggers_deadline_s)
    window.load_done()
    result = crossing(stack.db, order_ids, moved_at)
    run.monitor.set_phase("triggers_flush")
    return result | {
        "requested": plan.triggers_crossing,
        "accepted": len(order_ids),
        "http_errors": dict(Counter(str(r[2]) for r in records if r[2] != 202)),
        "intake_latency_ms": figures.summary((r[1] for r in records if r[2] == 202), 1),
        "waiting_before_move": waiting_before,
        "price_before": str(price),
        "limit_price": str(limit),
        "moved_to": str(target),
        "all_routed": routed,
        "drained": drained,
        "cost": window.finish(len(order_ids)),
    }


def triggered_count(engine: Engine) -> int:
    """Trigger events written so far (the `routing` event whose data says `triggered`)."""
    with engine.connect() as conn:
        query = text("SELECT count(*) FROM order_events WHERE data ? 'triggered'")
        return int(conn.execute(query).scalar_one())


def crossing_counts(engine: Engine, order_ids: list[str]) -> dict[str, int]:
    """Of these orders: how many wait, have a `routing` event, are terminal."""
    with engine.connect() as conn:
        row = conn.execute(COUNTS_SQL, {"ids": order_ids}).one()
    return {"waiting": row[0], "routed": row[1], "terminal": row[2]}


def crossing(engine: Engine, order_ids: list[str], moved_at: float) -> dict[str, Any]:
    """From the market's move to each order's `routing` event (the trigger engine routes the
    order as it triggers it), and from its trigger to the executor's `building` event; the
    evaluations that triggered them (one trigger statement writes one `at` for all its events);
    the final statuses. An order re-armed by the worker (the market moved back before its
    quote) is triggered again: its `building` latency runs from the trigger just before it."""
    with engine.connect() as conn:
        events = conn.execute(STEPS_SQL, {"ids": order_ids}).all()
        orders = conn.execute(FINALS_SQL, {"ids": order_ids}).all()
    history: dict[str, list[tuple[str, float, bool, bool]]] = defaultdict(list)
    for order_id, *step in events:
        history[order_id].append(tuple(step))  # type: ignore[arg-type]
    to_routing, to_building, evaluations, rearmed = [], [], Counter[float](), 0
    for steps in history.values():
        triggers = [at for _, at, triggered, _ in steps if triggered]
        evaluations.update(triggers)
        rearmed += sum(1 for *_, again in steps if again)
        routing = next((at for status, at, _, _ in steps if status == "routing"), None)
        if routing is None:
            continue
        to_routing.append((routing - moved_at) * 1000)
        building = next((at for status, at, _, _ in steps if status == "building"), None)
        before = [at for at in triggers if building is not None and at <= building]
        if building is not None and before:
            to_building.append((building - before[-1]) * 1000)
    return {
        "routed": len(to_routing),
        "move_to_routing_ms": figures.summary(to_routing, 1),
        "routing_to_building_ms": figures.summary(to_building, 1),
        "evaluations": [
            [round((at - moved_at) * 1000), n] for at, n in sorted(evaluations.items())
        ],
        "rearmed": rearmed,
        "final_status": dict(Counter(status for status, _ in orders)),
        "failures": dict(Counter(code or "unknown" for s, code in orders if s == "failed")),
    }
