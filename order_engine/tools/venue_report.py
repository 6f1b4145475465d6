"""Routing report: replay N seeded orders of mixed pairs and sizes, and summarise what happened.

    python -m order_engine.tools.venue_report --orders 1000 --seed 7     (or `make venue-report`)

Runs the real execution service on virtual time against a scratch database on the configured
(or embedded) PostgreSQL, with the default venue latencies and failure rates, and prints: the
share of orders routed to each venue and to splits, how much the splits gained, the realised
slippage distribution, retries and the failure mix. The JSON lands in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from order_engine.config import PROJECT_ROOT, Settings
from order_engine.localnet.config import LocalnetSettings
from order_engine.ops import migrate
from order_engine.ops.environment import Environment
from order_engine.tools.replay import mixed_orders, replay

DATABASE = "order_engine_venue_report"


def summarise(streams: list[list[dict[str, Any]]]) -> dict[str, Any]:
    routes: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    split_gains: list[Decimal] = []
    slippage: list[Decimal] = []
    for events in streams:
        final = events[-1]
        outcomes[
            final["data"]["error"]["code"] if final["status"] == "failed" else "confirmed"
        ] += 1
        for event in events[1:]:
            if event["status"] == "pending":
                retries[event["data"]["error"]["code"]] += 1
        routing = [e for e in events if e["status"] == "routing"]
        if not routing:
            continue
        decision = routing[-1]["data"]["decision"]
        legs = decision["legs"]
        routes["split" if len(legs) > 1 else legs[0]["dex"]] += 1
        if len(legs) > 1:
            best_single = max(Decimal(q["amountOut"]) for q in routing[-1]["data"]["quotes"])
            total = sum(Decimal(leg["amountOut"]) for leg in legs)
            split_gains.append((total - best_single) / best_single * 10_000)
        if final["status"] == "confirmed":
            slippage.append(Decimal(final["data"]["realisedSlippageBps"]))
    return {
        "orders": len(streams),
        "routedTo": dict(routes),
        "routedShare": {k: f"{v / max(1, sum(routes.values())):.1%}" for k, v in routes.items()},
        "splitGainBps": _distribution(split_gains),
        "realisedSlippageBps": _distribution(slippage),
        "outcomes": dict(outcomes),
        "retriesByCode": dict(retries),
    }


def _distribution(values: list[Decimal]) -> dict[str, str] | None:
    if not values:
        return None
    ordered = sorted(values)

    def pct(p: float) -> str:
        return str(ordered[min(len(ordered) - 1, int(p * len(ordered)))].quantize(Decimal("0.01")))

    return {
        "count": str(len(ordered)),
        "p50": pct(0.50),
        "p95": pct(0.95),
        "max": str(ordered[-1].quantize(Decimal("0.01"))),
        "mean": str((sum(ordered, Decimal(0)) / len(ordered)).quantize(Decimal("0.01"))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    environment = Environment()
    try:
        url = _scratch_database(environment.settings.database_url)
        migrate.upgrade(url)
        settings = Settings.from_env(
            {**environment.env, "DATABASE_URL": url, "DEX_SEED": str(args.seed)}
        )
        engine = create_engine(url)
        started = time.monotonic()
        localnet_settings = LocalnetSettings.from_env(
            {**environment.env, "DEX_SEED": str(args.seed)}
        )
        streams = replay(
            engine, settings, localnet_settings, list(mixed_orders(args.seed, args.orders))
        )
        engine.dispose()
        summary = summarise(streams)
        summary["seed"] = args.seed
        summary["wallSeconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(summary, indent=2))
        out = PROJECT_ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        path = Path(out / f"venue-report-seed{args.seed}-{args.orders}.json")
        path.write_text(json.dumps(summary, indent=2))
        print(f"written to {path}")
    finally:
        environment.close()
    return 0


def _scratch_database(server_url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return url.set(database=DATABASE).render_as_string(hide_password=False)


if __name__ == "__main__":
    raise SystemExit(main())
