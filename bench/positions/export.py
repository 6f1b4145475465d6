"""The export of a million fills (`--preset positions`, part `export`): how long it takes and how
much the API process grows while it streams.

The fills are seeded with one SQL statement (confirmed swaps of the bench's account, a route and
a transaction each, 50 ms apart), not through the API, then VACUUM (ANALYZE). One client reads
`GET /api/orders/export?format=csv` to its end while the API's processes' resident memory is
sampled every 100 ms. Targets: under 60 s, and under 100 MB of growth.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from bench.phases import Run
from bench.triggers import write_book

TARGET_S, TARGET_GROWTH_MB = 60, 100
MB = 1024 * 1024
START = datetime(2026, 11, 1, tzinfo=UTC)
_SEED_SQL = """
INSERT INTO orders (
    id, account_id, type, status, token_in, token_out, amount_in, slippage_bps, last_seq,
    attempts, deliveries, created_at, updated_at, dispatched_at, waiting, dex, route,
    quoted_amount_out, min_amount_out, amount_out, executed_price, tx_hash
)
SELECT gen_random_uuid(), %(account)s, 'market', 'confirmed', 'SOL', 'USDC', f.amount, 50, 5,
       1, 1, f.at, f.at + interval '3 seconds', f.at, false, f.dex,
       jsonb_build_object('dex', f.dex, 'amountOut', (f.amount * 150)::text, 'legs',
           jsonb_build_array(jsonb_build_object('dex', f.dex, 'poolId', 'bench-' || f.dex,
               'amountIn', f.amount::text, 'amountOut', (f.amount * 150)::text,
               'percent', '100.00'))),
       f.amount * 150, f.amount * 149, f.amount * 150, 150, md5(i::text) || md5((-i)::text)
  FROM generate_series(1, %(count)s) AS i
 CROSS JOIN LATERAL (
       SELECT round(0.01 + mod(i, 1000) / 100.0, 9) AS amount,
              %(start)s + make_interval(secs => i * 0.05) AS at,
              CASE WHEN mod(i, 3) = 0 THEN 'raydium' ELSE 'meteora' END AS dex
       ) AS f
"""


def export_fills(run: Run) -> dict[str, Any]:
    """Seed the fills, then export them all as CSV, timing it and watching the API's memory."""
    plan, stack = run.plan, run.stack
    run.idle()
    run.monitor.set_phase("export_seed")
    began = time.monotonic()
    params = {"account": stack.account_id, "count": plan.export_rows, "start": START}
    write_book(stack.db, _SEED_SQL, [], **params)
    seeded_s = time.monotonic() - began
    run.monitor.set_phase("export")
    memory = _Memory(lambda: stack.child_pids("api") or stack.pids("api"))
    memory.start()
    window = run.window()
    try:
        read = _read_export(stack.port)
    finally:
        memory.stop()
    window.load_done()
    growth_mb = (memory.peak - memory.before) / MB
    result = {
        "rows_seeded": plan.export_rows,
        "seeded_s": round(seeded_s, 1),
        **read,
        "rows_per_s": round(read["rows"] / read["elapsed_s"]) if read["elapsed_s"] else None,
        "api_rss_before_mb": round(memory.before / MB, 1),
        "api_rss_peak_mb": round(memory.peak / MB, 1),
        "api_rss_growth_mb": round(growth_mb, 1),
        "cost": window.finish(read["rows"]),
    }
    whole, took = read["rows"] == plan.export_rows, f"{read['elapsed_s']:.1f} s"
    result["targets"] = [
        [f"export {plan.export_rows:,} fills", f"{took} ({read['rows']:,} rows, "
         f"{read['mb']:.0f} MB of CSV)", whole and read["elapsed_s"] < TARGET_S, f"< {TARGET_S} s"],
        ["the API's memory while exporting", f"+{growth_mb:.1f} MB (peak {memory.peak / MB:.0f} "
         "MB)", whole and growth_mb < TARGET_GROWTH_MB, f"< {TARGET_GROWTH_MB} MB of growth"],
    ]  # fmt: skip
    run.idle()
    return result


def _read_export(port: int) -> dict[str, Any]:
    """GET the whole export as CSV, reading it as it comes: its rows, size and time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {os.environ['BENCH_API_KEY']}"}
    began = time.monotonic()
    connection.request("GET", "/api/orders/export?format=csv&from=2026-01-01", headers=headers)
    response = connection.getresponse()
    assert response.status == 200, response.read()[:500]
    first_byte_s = time.monotonic() - began
    lines = size = 0
    while chunk := response.read(MB):
        lines += chunk.count(b"\n")
        size += len(chunk)
    elapsed = time.monotonic() - began
    connection.close()
    return {
        "rows": lines - 1,  # the header
        "mb": round(size / MB, 1),
        "elapsed_s": round(elapsed, 2),
        "first_byte_ms": round(first_byte_s * 1000, 1),
    }


class _Memory(threading.Thread):
    """The summed resident memory of some processes, sampled until stopped: the first sample
    and the highest."""

    def __init__(self, pids: Any) -> None:
        super().__init__(name="api-memory", daemon=True)
        self.pids, self.stopped = pids, threading.Event()
        self.before = self.peak = self._rss()

    def _rss(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):  # a process that just ended
                total += psutil.Process(pid).memory_info().rss
        return total

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.peak = max(self.peak, self._rss())
