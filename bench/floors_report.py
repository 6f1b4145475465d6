"""The figures of `python -m bench.floors`: per operation from two readings, the lowest of the
repeats, and the Markdown table."""

from __future__ import annotations

import os
from typing import Any

from bench import counters
from bench.stack import child_settings

# The columns of the table: process groups of `bench.stack.monitor_groups`.
SERVER_GROUPS = ("api", "worker", "postgres_bench", "postgres", "redis", "localnet")


def per_operation(
    before: dict[str, Any], after: dict[str, Any], done: int, client: dict[str, Any]
) -> dict[str, Any]:
    """CPU ms per operation of each server group and the client, Redis commands per operation."""
    seconds = after["cpu"]["t"] - before["cpu"]["t"]
    cpu0, cpu1 = before["cpu"]["cpu_s"], after["cpu"]["cpu_s"]
    ms = {g: round((cpu1.get(g, 0) - cpu0.get(g, 0)) * 1000 / done, 4) for g in SERVER_GROUPS}
    redis_cost = counters.cost(before, after, after, done).get("redis", {})
    return {
        "n": done,
        "window_s": round(seconds, 2),
        "ops_per_s": round(done / (client.get("wall_s") or seconds), 1),
        "client_ms": round(client["client_cpu_s"] * 1000 / done, 4)
        if "client_cpu_s" in client
        else None,
        "cpu_ms": ms,
        "servers_ms": round(sum(v for g, v in ms.items() if g != "postgres_bench"), 4),
        "redis_commands": redis_cost.get("commands_per_order"),
        "redis_top": redis_cost.get("top", [])[:4],
    }


def lowest(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's lowest value over the repeats, and the spread of the servers' total."""
    best = dict(repeats[0])
    for key in ("client_ms", "servers_ms", "redis_commands"):
        values = [r[key] for r in repeats if r[key] is not None]
        best[key] = min(values) if values else None
    best["cpu_ms"] = {g: min(r["cpu_ms"][g] for r in repeats) for g in SERVER_GROUPS}
    totals = [r["servers_ms"] for r in repeats]
    best["spread_pct"] = round((max(totals) / min(totals) - 1) * 100, 1) if min(totals) else None
    return best


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| floor | per | n | client ms | API ms | worker ms | PG backend ms | PG all ms | Redis ms "
        "| localnet ms | servers ms (spread) | Redis cmds |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        best = lowest(row["repeats"])
        cpu = best["cpu_ms"]
        cells = [
            row["floor"],
            row["per"],
            str(best["n"]),
            _ms(best["client_ms"]),
            *(_ms(cpu[g]) for g in SERVER_GROUPS),
            f"{_ms(best['servers_ms'])} ({best['spread_pct']} %)",
            "–" if best["redis_commands"] is None else f"{best['redis_commands']:g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def report(
    rows: list[dict[str, Any]],
    stack: Any,
    about: dict[str, Any],
    args: Any,
    load_at_start: list[float],
) -> str:
    """The heading (plan, machine, versions, load) and the table."""
    settings = child_settings(stack.env())
    pool = f"{settings.worker_pool} ×{settings.worker_concurrency}"
    versions = ", ".join(
        f"{name} {about.get(key) or about.get('packages', {}).get(key)}"
        for name, key in (
            ("PostgreSQL", "postgresql"),
            ("Redis", "redis_server"),
            ("Python", "python"),
            ("celery", "celery"),
            ("gunicorn", "gunicorn"),
            ("SQLAlchemy", "sqlalchemy"),
            ("psycopg", "psycopg"),
        )
    )
    return "\n".join(
        [
            f"# Floors: n = {args.n} per repeat, {args.repeat} repeats (lowest shown), "
            f"{args.connections} connections",
            "",
            f"CPU ms per operation (user + system, each process's own counters); worker pool "
            f"{pool}; servers: {stack.server_kind}; load average at start "
            f"{load_at_start}, at end {[round(x, 2) for x in os.getloadavg()]}; "
            f"{about.get('cpu_model')}, {about.get('logical_cores')} cores; {versions}. "
            "'servers ms' adds every server group (API, worker, all of PostgreSQL, Redis, "
            "localnet), not the client; its spread is max/min − 1 over the repeats.",
            "",
            table(rows),
        ]
    )
