"""The orders that protect a position, on the real stack (`--preset positions`): what a book of
stops, OCO brackets and trailing stops costs while nothing triggers, what a trailing stop's
peak writes, and how fast a crossing fires them.

The preset runs `PARTS` in order, each a function of the run and what earlier parts found
(`Book`) that returns its figures; another order type adds its part to the list. The stack is
the triggers preset's (bench/triggers.py): the worker, Celery beat sending the evaluation every
TRIGGER_INTERVAL_MS, the localnet at the default latency.

- `idle`: an idle window with no waiting order, then `positions_waiting` orders written by SQL
  (a third each stops, brackets and trailing stops, all selling SOL, in three sizes, none near
  the market), an idle window with them (the market random-walking), and one after SOL is moved
  5 % down (under every trailing stop's peak, above every trigger): CPU per evaluation, and the
  rows written to `orders` and to `trailing_peaks` in each window (PostgreSQL's own counters).
  While no quote rises above its class's newest mark, a trailing stop's peak writes nothing.
- `crossing`: `positions_crossing` orders through the API (a third each: a stop, a bracket's
  stop-loss and a trailing stop, 10 % under the market), then one move of the market 20 % down:
  from the move to each order's `routing` event, per type, and how many evaluations it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from bench.loadgen import ENGINE_PATH
from bench.phases import Run
from bench.plan import DEFAULT_LATENCY
from bench.triggers import (
    SETTLE_S,
    best_prices,
    crossing,
    crossing_counts,
    idle_window,
    move,
    sol_price,
    write_book,
)
from order_engine.domain.triggers import size_class
from order_engine.models import DEFAULT_ACCOUNT_ID

AMOUNTS = (Decimal("0.1"), Decimal("1"), Decimal("10"))  # SOL: three size classes
FALL = Decimal("0.95")  # the no-rise window: SOL 5 % down, under every peak, above every trigger
NEAR, CROSS = Decimal("0.9"), Decimal("0.8")  # the crossing orders' triggers, the move
TYPES = ("stop", "oco", "trailing_stop")

# Order i is a stop, a bracket or a trailing stop (i mod 3), on pair (i / 3) mod P, of size
# AMOUNTS[(i / 3P) mod 3]: stops and stop-losses at 0.2-0.5x the pair's price, take-profits at
# 2-12x, trails of 30-50 % from a peak at the price (the crossing moves SOL 24 % under it).
_BOOK_SQL = """
WITH pairs AS (
    SELECT * FROM unnest(%(ins)s::text[], %(outs)s::text[], %(prices)s::numeric[])
           WITH ORDINALITY AS p(tin, tout, price, n)
), sizes AS (
    SELECT * FROM unnest(%(amounts)s::numeric[], %(classes)s::smallint[])
           WITH ORDINALITY AS s(amount, k, n)
), book AS (
    SELECT g.i, (ARRAY['stop', 'oco', 'trailing_stop'])[mod(g.i, 3) + 1] AS type, p.tin, p.tout,
           s.amount, s.k, round(p.price * (0.2 + mod(g.i, 300) / 1000.0), 12) AS low,
           round(p.price * (2 + mod(g.i, 1000) / 100.0), 12) AS high,
           3000 + mod(g.i * 7, 2001) AS trail, p.price
      FROM generate_series(0, %(count)s - 1) AS g(i)
      JOIN pairs AS p ON p.n = mod(g.i / 3, %(pairs)s) + 1
      JOIN sizes AS s ON s.n = mod(g.i / (3 * %(pairs)s), 3) + 1
), new_orders AS (
    INSERT INTO orders (
        id, account_id, type, status, token_in, token_out, amount_in, slippage_bps,
        last_seq, attempts, deliveries, created_at, updated_at, dispatched_at, waiting,
        size_class, limit_price, trigger_price, stop_price, trail_bps, peak_price, trail_since
    )
    SELECT gen_random_uuid(), %(account)s, type, 'pending', tin, tout, amount, 300,
           1, 0, 0, now(), now(), now(), true, k,
           CASE WHEN type = 'oco' THEN high END, CASE WHEN type = 'oco' THEN high END,
           CASE WHEN type = 'trailing_stop' THEN round(price * (10000 - trail) / 10000, 18)
                ELSE low END,
           CASE WHEN type = 'trailing_stop' THEN trail END,
           CASE WHEN type = 'trailing_stop' THEN price END,
           CASE WHEN type = 'trailing_stop' THEN now() END
      FROM book
    RETURNING id, type
)
INSERT INTO order_events (order_id, seq, status, attempt, data, at)
SELECT id, 1, 'pending', 0, jsonb_build_object('type', type, 'waitingFor', '{}'::jsonb), now()
  FROM new_orders
"""
# Rows written: an order's row updated (its peak, were it kept per order), a mark inserted,
# updated or deleted. (The book's own inserts may reach the counters late: not counted.)
_WRITES_SQL = text(
    "SELECT relname, CASE WHEN relname = 'orders' THEN n_tup_upd"
    " ELSE n_tup_ins + n_tup_upd + n_tup_del END"
    " FROM pg_stat_user_tables WHERE relname IN ('orders', 'trailing_peaks')"
)
# PostgreSQL's table counters reach the view when a backend flushes them, at most once a second
# after a transaction (PGSTAT_MIN_INTERVAL): a read this long after a window has them all.
STATS_FLUSH_S = 2.0


@dataclass
class Book:
    """What the parts share: the SOL pairs' prices when the book was written, figures."""

    prices: list[tuple[str, str, Decimal]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def positions(run: Run) -> dict[str, Any]:
    """Every part of the preset in order, on one stack; the market back where it was after."""
    run.restart_worker(DEFAULT_LATENCY)
    book, price = Book(), sol_price(run.stack)
    try:
        for name, part in PARTS:
            book.figures[name] = part(run, book)
    finally:
        run.idle()
        move(run.stack, price)
    return book.figures | {
        "interval_ms": run.stack.settings["worker"].trigger_interval_ms,
        "latency": DEFAULT_LATENCY,
        "cost": book.figures.get("crossing", {}).pop("cost", None),
    }


def idle(run: Run, book: Book) -> dict[str, Any]:
    """The book's cost while nothing triggers: none waiting, then the book in a walking market,
    then the book with SOL 5 % down (no quote of its classes rises: no peak written)."""
    run.monitor.set_phase("positions_settle")
    time.sleep(SETTLE_S)
    empty = idle_window(run, "positions_idle_empty")
    run.monitor.set_phase("positions_book")
    pools = run.stack.localnet_rpc("localnet_status")["pools"]
    book.prices = [p for p in best_prices(pools) if p[0] == "SOL"]
    began, account = time.monotonic(), run.stack.account_id or DEFAULT_ACCOUNT_ID
    classes = [size_class(int(a * 10**9)) for a in AMOUNTS]
    write_book(run.stack.db, _BOOK_SQL, book.prices, amounts=list(AMOUNTS), classes=classes,
               count=run.plan.positions_waiting, account=account)  # fmt: skip
    written_s = round(time.monotonic() - began, 1)
    time.sleep(SETTLE_S)  # the first evaluations: every class's first mark
    walking = _counted(run, "positions_idle_walking")
    price = sol_price(run.stack)
    move(run.stack, price * FALL)
    time.sleep(SETTLE_S)
    fallen = _counted(run, "positions_idle_no_rise")
    return {
        "orders": run.plan.positions_waiting,
        "pair_directions": len(book.prices),
        "written_s": written_s,
        "none_waiting": empty,
        "walking": walking,
        "no_rise": fallen | {"moved": f"SOL {price} → {price * FALL}"},
    }


def crossing_part(run: Run, book: Book) -> dict[str, Any]:
    """Stops, stop-losses and trailing stops through the API near the market, one move 20 %
    down across all of them: move → `routing` per type, and the evaluations it took."""
    price = sol_price(run.stack)
    run.monitor.set_phase("positions_submit")
    per_type = max(1, run.plan.positions_crossing // len(TYPES))
    near = str((price * NEAR).quantize(Decimal("0.0001")))
    bodies = {
        "stop": {"type": "stop", "triggerPrice": near, "slippageBps": 300},
        "oco": {
            "type": "oco",
            "takeProfit": {"limitPrice": str((price * 2).quantize(Decimal("0.0001")))},
            "stopLoss": {"triggerPrice": near},
            "slippageBps": 300,
        },
        "trailing_stop": {"type": "trailing_stop", "trailBps": 1000, "slippageBps": 300},
    }
    ids = {name: _submit(run, name, body, per_type) for name, body in bodies.items()}
    everyone = [order_id for group in ids.values() for order_id in group]
    time.sleep(SETTLE_S)  # the trailing stops' classes get their mark
    run.monitor.set_phase("positions_cross")
    window = run.window()
    target = (price * CROSS).quantize(Decimal("0.0001"))
    moved_at = time.time()
    move(run.stack, target)
    counts = lambda: crossing_counts(run.stack.db, everyone)  # noqa: E731
    routed = run.wait(lambda: counts()["waiting"] == 0, run.plan.triggers_deadline_s)
    run.monitor.set_phase("positions_drain")
    drained = run.wait(lambda: counts()["terminal"] >= len(everyone), run.plan.triggers_deadline_s)
    window.load_done()
    by_type = {name: crossing(run.stack.db, group, moved_at) for name, group in ids.items()}
    return {
        "accepted": {name: len(group) for name, group in ids.items()},
        "moved": f"SOL {price} → {target}",
        "all_routed": routed,
        "drained": drained,
        "all": crossing(run.stack.db, everyone, moved_at),
        **{f"by_type_{name}": figures for name, figures in by_type.items()},
        "cost": window.finish(len(everyone)),
    }


# The parts of the preset, in order: (name, function(run, book) -> figures).
PARTS: list[tuple[str, Callable[[Run, Book], dict[str, Any]]]] = [
    ("idle", idle),
    ("crossing", crossing_part),
]


def _counted(run: Run, phase: str) -> dict[str, Any]:
    """An idle window, with the rows written to `orders` and `trailing_peaks` during it."""
    before = _writes(run)
    window = idle_window(run, phase)
    time.sleep(STATS_FLUSH_S)
    after = _writes(run)
    return window | {"rows_written": {t: after.get(t, 0) - before.get(t, 0) for t in after}}


def _writes(run: Run) -> dict[str, int]:
    with run.stack.db.connect() as conn:
        return {name: int(n) for name, n in conn.execute(_WRITES_SQL).all()}


def _submit(run: Run, name: str, order: dict[str, Any], count: int) -> list[str]:
    spec = {"path": ENGINE_PATH, "concurrency": 8, "count": count, "duration_s": 120}
    records = run.http(f"positions-{name}", "closed_loop", order=order, **spec)["records"]
    return [r[3] for r in records if r[2] == 202]
