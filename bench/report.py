"""The benchmark's one report module: `result.json` (every figure and every second's sample) and
`report.md` of `python -m bench`.

The Markdown opens with the targets (what was asked, the figure reached, pass or miss), then
what each order cost in each phase (CPU ms of each process group, PostgreSQL commits and Redis
commands per order), the CPU each group used in each phase (the first evidence for any miss:
on a shared 2-core machine "the CPU was full, and here is who used it"), one table per phase,
the settings, the machine and the versions.
`python -m bench.report <run folder>` writes the Markdown again from a run's result.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

GROUPS = ("api", "worker", "scheduler", "localnet", "postgres", "redis", "loadgen")
COST_PHASES = ("e2e-zero", "e2e-default", "soak", "peer", "triggers", "stops", "twap", "export")
TARGET_WS, TARGET_E2E_RATE, TARGET_P99_S = 2000, 100, 6
TARGET_ENGINE_MS, TARGET_POSTGRES_MS, TARGET_LOCALNET_MS, TARGET_REDIS_COMMANDS = 10, 4, 4, 15
TARGET_TRIGGER_PCT, TARGET_TRIGGER_WAITING = 5, 100_000
TARGET_TRIGGER_P99_MS, TARGET_TRIGGER_CROSSING = 1000, 1000
RATE_TOLERANCE = 0.98  # the open-loop generator's own timing noise
SOAK_MINUTES = 10


def write(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    results["cpu_by_phase"] = cpu_by_phase(results.get("samples", []))
    results["targets"] = targets(results)
    json_path, md_path = run_dir / "result.json", run_dir / "report.md"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    md_path.write_text(markdown(results))
    return [json_path, md_path]


# -- derived figures ---------------------------------------------------------------------------


def cpu_by_phase(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean CPU per phase: the machine (% of all cores) and each group (% of one core)."""
    cores = os.cpu_count() or 1
    by_phase: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_phase.setdefault(sample["phase"], []).append(sample)
    rows = []
    for phase, group in by_phase.items():
        row = {"phase": phase, "seconds": len(group), "cores": cores}
        row["machine_pct"] = round(sum(s["cpu"] for s in group) / len(group), 1)
        for name in (*GROUPS, "postgres_bench"):
            cpu = sum(s["groups"].get(name, {}).get("cpu", 0.0) for s in group)
            row[name] = round(cpu / len(group), 1)
        # Whatever else ran on the machine meanwhile (other users' tests, this process).
        row["other"] = round(max(0.0, row["machine_pct"] * cores - sum(row[g] for g in GROUPS)), 1)
        rows.append(row)
    return rows


# -- targets -------------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[list[str]]:
    """One row per target: what was asked, what was reached, pass/miss, a note."""
    phases = results.get("phases", {})
    rows = _intake_targets(phases.get("intake")) + _e2e_targets(phases.get("e2e-default"))
    rows += _peer_targets(phases.get("peer")) + _cost_targets(phases)
    rows += _ws_targets(phases.get("ws")) + _trigger_targets(phases.get("triggers"))
    rows += _position_targets(phases.get("stops"))
    # A phase may bring its own rows (bench/positions): target, figure, verdict, note.
    for phase in phases.values():
        rows += [_row(*target) for target in phase.get("targets", [])]
    return [*rows, _memory_target(results)]


def _row(target: str, figure: str, ok: bool | None, note: str = "") -> list[str]:
    return [target, figure, "n/a" if ok is None else ("pass" if ok else "**miss**"), note]


def _seconds(ms: float | None, tail: str = "") -> str:
    return "n/a" if ms is None else f"{ms / 1000:.2f} s{tail}"


def _intake_targets(intake: dict[str, Any] | None) -> list[list[str]]:
    if not intake:
        return [_row("Intake ≥ 70 % of the baseline's req/s", "not run", None)]
    medians = intake["saturation_median_per_s"]
    ratio, p99 = intake["ratio_engine_to_baseline"] or 0, intake["engine_p99_ms_at_200"]
    figure = f"{ratio * 100:.0f} % ({medians['engine']:.0f} vs {medians['baseline']:.0f} req/s)"
    return [
        _row("Intake ≥ 70 % of the baseline's req/s (saturation)", figure, ratio >= 0.7),
        _row("Intake p99 < 25 ms at 200 req/s", f"{p99} ms", p99 is not None and p99 < 25),
    ]


def _in_time(p99: float | None, lost: int) -> bool:
    return p99 is not None and p99 < TARGET_P99_S * 1000 and lost == 0


def _e2e_targets(e2e: dict[str, Any] | None) -> list[list[str]]:
    if not e2e:
        return [_row("End to end (default latency)", "not run", None)]
    note = f"window {e2e['window_s']:.0f} s (target 60 s)" if e2e["window_s"] < 60 else ""
    steady, p99 = e2e["steady_completed_per_s"] or 0.0, e2e["accept_to_confirmed_ms"]["p99"]
    rate = f"{steady} orders/s completed (offered {e2e['offered_per_s']}/s, accepted "
    rate += f"{e2e['accepted_per_s']}/s)"
    lost = _seconds(p99, f", {e2e['lost']} of {e2e['accepted']} lost")
    target = f"≥ {TARGET_E2E_RATE} orders/s sustained for 60 s, default latency (open loop)"
    return [
        _row(target, rate, steady >= TARGET_E2E_RATE * RATE_TOLERANCE, note),
        _row(f"p99 accept → confirmed < {TARGET_P99_S} s, default latency, none lost", lost,
             _in_time(p99, e2e["lost"]), note),
    ]  # fmt: skip


def _peer_targets(peer: dict[str, Any] | None) -> list[list[str]]:
    if not peer:
        return []
    note = f"peer load: {peer['accepted']} orders, {peer['connections']} connections"
    p99, rate = peer["accept_to_confirmed_ms"]["p99"], peer["orders_per_s"] or 0.0
    exact = f"{peer['streams_exact_pct']} % ({peer['streams_exact']} of {peer['streams']})"
    completed = f"{rate} orders/s ({peer['completed']} terminal in {peer['span_s']} s)"
    return [
        _row(f"≥ {TARGET_E2E_RATE} orders/s end to end (peer load)", completed, rate >= 100, note),
        _row(f"p99 accept → confirmed < {TARGET_P99_S} s (peer load), none lost",
             _seconds(p99, f", {peer['lost']} lost"), _in_time(p99, peer["lost"]), note),
        _row("Every status stream exact (peer load)", exact,
             0 < peer["streams_exact"] == peer["streams"], note),
    ]  # fmt: skip


def _cost_targets(phases: dict[str, Any]) -> list[list[str]]:
    """Judged on the peer load if it ran, else on end to end at the default latency."""
    name = next((n for n in ("peer", "e2e-default") if (phases.get(n) or {}).get("cost")), None)
    if name is None:
        return []
    cost = phases[name]["cost"]
    cpu, note = cost["cpu_ms_per_order"], f"`{name}`, {cost['orders']} orders"
    parts = ", ".join(f"{g} {cpu.get(g)}" for g in ("api", "worker", "scheduler"))
    engine = f"Engine (API + worker + scheduler) ≤ {TARGET_ENGINE_MS} ms CPU per order"
    rows = [_row(engine, f"{cpu['engine']} ms ({parts})", cpu["engine"] <= TARGET_ENGINE_MS, note)]
    for group, title, limit in (("postgres", "PostgreSQL", TARGET_POSTGRES_MS),
                                ("localnet", "Localnet", TARGET_LOCALNET_MS)):  # fmt: skip
        ms = cpu.get(group)
        rows.append(_row(f"{title} ≤ {limit} ms CPU per order", f"{ms} ms", ms <= limit, note))
    if rd := cost.get("redis"):
        per_order, target = rd["commands_per_order"], f"≤ {TARGET_REDIS_COMMANDS} Redis commands"
        figure = f"{per_order} (server-wide `INFO commandstats`)"
        rows.append(_row(f"{target} per order", figure, per_order <= TARGET_REDIS_COMMANDS, note))
    if pg := cost.get("postgres"):
        opened, seen = pg["sessions_opened"], cost["backends_seen"]
        figure = f"{opened} opened ({pg['sessions_source']}); {seen} new backends seen"
        ok = opened == 0 if opened is not None else seen == 0
        rows.append(_row("No PostgreSQL connection opened during a burst", figure, ok, note))
    return rows


def _ws_targets(ws: dict[str, Any] | None) -> list[list[str]]:
    """The lag is judged from the publish: the Redis tap's receipt → the client's. `at` is
    stamped before the worker commits and publishes, so `at` → client, shown beside it, also
    counts the worker's side; without the tap's times there is no verdict."""
    if not ws:
        return [_row("2,000 WebSocket subscribers, lag p99 < 100 ms", "not run", None)]
    short, served = ws["requested"] < TARGET_WS, ws["streams_exact"]
    note = f"only {ws['requested']} subscribers (--quick)" if short else ""
    sockets = f"{ws['connected']} of {ws['requested']} connected, {served} streamed to the end "
    sockets += f"(close codes {ws['close_codes']})"
    api, whole, worker = ws["lag_redis_to_socket_ms"], ws["lag_ms"], ws["lag_at_to_redis_ms"]
    lag = f"p99 {api['p99']} ms from the publish (p50 {api['p50']}; `at` → client p99 "
    lag += f"{whole['p99']} ms, of which commit + publish p99 {worker['p99']})"
    if api["p99"] is None:
        lag = f"not measured: the tap recorded no event ({ws['tap_error'] or 'no error'})"
    gaps = [note] if note else []
    if api["count"] < ws["live_events"]:
        gaps.append(f"the tap saw {api['count']} of the {ws['live_events']} live events")
    if ws["tap_after_client"]:
        gaps.append(f"the tap read {ws['tap_after_client']} events after their client did")
    all_served = served >= TARGET_WS and ws["connected"] == ws["streams"]
    return [
        _row(f"{TARGET_WS:,} concurrent WebSocket subscribers on one API host", sockets,
             None if short and served == ws["requested"] else all_served, note),
        _row("Event delivery lag p99 < 100 ms from the publish", lag,
             None if api["p99"] is None else api["p99"] < 100, "; ".join(gaps)),
    ]  # fmt: skip


def _engine_pct(window: dict[str, Any]) -> str:
    pct = window["cpu_pct_of_core"]
    return f"{pct['engine']} % (worker {pct['worker']}, scheduler {pct['scheduler']}"


def _trigger_targets(triggers: dict[str, Any] | None) -> list[list[str]]:
    """Judged on the worker + scheduler (everything the engine spends on evaluations)."""
    if not triggers:
        return []
    idle, empty, cross = triggers["idle_waiting"], triggers["idle_empty"], triggers["crossing"]
    quick = " (--quick)" if idle["orders"] < TARGET_TRIGGER_WAITING else ""
    cost = f"{_engine_pct(idle)}; {idle['cpu_ms_per_evaluation']['engine']} ms CPU per "
    cost += f"evaluation); none waiting: {empty['cpu_pct_of_core']['engine']} %"
    p99, routed = cross["move_to_routing_ms"]["p99"], cross["routed"] == cross["accepted"]
    latency = _seconds(p99, f" (then `routing` → `building` p99 "
                            f"{cross['routing_to_building_ms']['p99']} ms); ")  # fmt: skip
    latency += f"{cross['routed']} of {cross['accepted']} routed"
    crossing = f"{cross['accepted']:,} crossed at once"
    crossing += " (--quick)" if cross["accepted"] < TARGET_TRIGGER_CROSSING else ""
    idle_ok = idle["cpu_pct_of_core"]["engine"] < TARGET_TRIGGER_PCT and idle["triggered"] == 0
    fast = p99 is not None and p99 < TARGET_TRIGGER_P99_MS and routed
    target = f"Trigger evaluation < {TARGET_TRIGGER_PCT} % of one core, nothing triggering"
    return [
        _row(target, cost, idle_ok, f"{idle['orders']:,} waiting{quick}"),
        _row("p99 crossing slot → `routing` < 1 s", latency, fast, crossing),
    ]


def _position_targets(positions: dict[str, Any] | None) -> list[list[str]]:
    """Stops, brackets and trailing stops: the book's cost while nothing triggers, the peak's
    writes while the price does not rise, and a crossing fired in the evaluation after it."""
    if not positions or "idle" not in positions:
        return []
    idle = positions["idle"]
    walking, fallen, empty = idle["walking"], idle["no_rise"], idle["none_waiting"]
    cost = f"{_engine_pct(walking)}); SOL 5 % down: {fallen['cpu_pct_of_core']['engine']} %; "
    cost += f"none waiting: {empty['cpu_pct_of_core']['engine']} %"
    quiet = walking["triggered"] == 0 and fallen["triggered"] == 0
    written = f"rows written with SOL 5 % down: {fallen['rows_written']} over "
    written += f"{fallen['evaluations']} evaluations; walking: {walking['rows_written']}"
    rows = [
        _row(f"Stops, brackets, trailing stops < {TARGET_TRIGGER_PCT} % of one core, nothing "
             "triggering", cost, walking["cpu_pct_of_core"]["engine"] < TARGET_TRIGGER_PCT
             and quiet, f"{idle['orders']:,} waiting"),
        _row("A trailing stop's peak writes nothing while the price does not rise", written,
             not any(fallen["rows_written"].values())),
    ]  # fmt: skip
    if cross := positions.get("crossing"):
        every = cross["all"]
        p99, at_once = every["move_to_routing_ms"]["p99"], len(every["evaluations"]) == 1
        by_type = {t: cross[f"by_type_{t}"]["move_to_routing_ms"]["p99"] for t in cross["accepted"]}
        figure = _seconds(p99, f" ({by_type} ms by type); evaluations: {every['evaluations']}")
        fired = cross["all_routed"] and p99 is not None and p99 < TARGET_TRIGGER_P99_MS
        rows.append(_row("Each crossed order fires in the evaluation after the move (p99 < 1 s)",
                         figure, fired and at_once, f"{sum(cross['accepted'].values())} crossed "
                         "at once"))  # fmt: skip
    return rows


def _memory_target(results: dict[str, Any]) -> list[str]:
    """The worker's RSS over the soak (or end to end at the default latency), the last sixth
    against the second (after warm-up); judged only on about 10 minutes, else shown."""
    target = "Worker memory flat over a 10-minute soak (≤ 10 % growth)"
    phase = "e2e_soak" if "soak" in results.get("phases", {}) else "e2e_default"
    samples = [s for s in results.get("samples", []) if s["phase"].startswith(phase)]
    rss = [v for v in (s["groups"]["worker"]["rss_mb"] for s in samples) if v]
    if len(rss) < 12:
        return _row(target, "not measured", None)
    sixth = len(rss) // 6
    first, last = sum(rss[sixth : 2 * sixth]) / sixth, sum(rss[-sixth:]) / sixth
    growth, minutes = (last - first) / first * 100, len(rss) / 60
    figure = f"{growth:+.1f} % ({first:.1f} → {last:.1f} MiB)"
    if minutes < SOAK_MINUTES * 0.95:
        return _row(target, figure, None, f"only {minutes:.1f} min of `{phase}`; run "
                    "--soak-minutes 10")  # fmt: skip
    return _row(target, figure, growth <= 10)


# -- Markdown ------------------------------------------------------------------------------------

COST_COLUMNS = ("engine", *GROUPS[:6], "postgres_bench", "loadgen")
COST_HEADER = "phase|orders|window s|engine|API|worker|scheduler|localnet|PostgreSQL|Redis"
COST_HEADER += "|pg bench|load client|commits|rollbacks|Redis cmds"
COST_HEADER += "|PG sessions|Redis conns"
LEFT_OUT = {"cost", "began", "ended", "targets", "table", "strategies"}


def markdown(results: dict[str, Any]) -> str:
    phases, settings = results.get("phases", {}), results.get("settings", {})
    minutes = (results["finished_at"] - results["started_at"]) / 60
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(results["started_at"]))
    cpu = [[r["phase"], r["seconds"], r["machine_pct"], *(r[g] for g in (*GROUPS, "other"))]
           for r in results["cpu_by_phase"]]  # fmt: skip
    commands = "\n".join(f"{k}: {' '.join(v)}" for k, v in settings.get("commands", {}).items())
    environment = json.dumps({"plan": results["plan"], **settings.get("env", {})}, indent=1)
    parts = [
        f"# Order Engine benchmark — {results['plan']['name']} run",
        f"Started {started}, took {minutes:.1f} min. Everything (servers, worker, load "
        "generators) shares this machine's cores, so compare ratios within one run rather "
        "than absolute figures across runs; the `other` CPU column shows what else ran.",
        "**Interrupted**: only the phases that finished." if results.get("interrupted") else "",
        "**Errors:**\n\n```\n" + "\n".join(results["errors"]) + "\n```"
        if results["errors"]
        else "",
        "## Targets",
        table(["target", "reached", "verdict", "note"], results["targets"]),
        _cost(phases),
        "## CPU by phase\n\nMachine: mean % of all cores; groups: mean % of one core; `other`: "
        "everything else on the machine.",
        table(["phase", "s", "machine %", *GROUPS, "other"], cpu),
        *(_phase(name, phase) for name, phase in phases.items()),
        f"## Settings\n\nCommands (last start of each):\n\n```\n{commands}\n```\n\n"
        f"Plan and environment (URLs omitted):\n\n```json\n{environment}\n```",
        "## Machine and versions",
        table(["", ""], [[k, v] for k, v in (results.get("machine") or {}).items()]),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A value as a table cell: latency summaries as percentiles, the rest as compact JSON."""
    text = value if isinstance(value, str) else json.dumps(_compact(value), default=str)
    return "" if value is None else text.replace("|", "\\|").replace("\n", " ").strip('"')


def _compact(value: Any) -> Any:
    if isinstance(value, dict) and "p99" in value:
        return " / ".join(f"{p} {value.get(p)}" for p in ("p50", "p95", "p99", "max"))
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    return value


def _cost(phases: dict[str, Any]) -> str:
    """CPU ms per order of each group, and the servers' counters per order, per phase."""
    rows, tops = [], []
    for name in (n for n in COST_PHASES if (phases.get(n) or {}).get("cost")):
        c = phases[name]["cost"]
        pg, rd = c.get("postgres") or {}, c.get("redis") or {}
        rows.append([name, c["orders"], c["window_s"]])
        rows[-1] += [c["cpu_ms_per_order"].get(k) for k in COST_COLUMNS]
        rows[-1] += [pg.get("commits_per_order"), pg.get("rollbacks_per_order")]
        rows[-1] += [rd.get("commands_per_order"), pg.get("sessions_opened")]
        rows[-1] += [rd.get("connections_opened")]
        tops.append(
            f"- `{name}`: " + ", ".join(f"`{cmd}` {per}" for cmd, _, per in rd.get("top", []))
        )
    if not rows:
        return ""
    about = (  # docs/performance/full-run.md says how each figure is read
        "CPU ms per terminal order of each process group (own counters, user + system, reaped "
        "children included; `engine` = API + worker + scheduler; `pg bench`: the bench "
        "database's backends seen, a lower bound); per order, PostgreSQL commits and rollbacks, "
        "Redis commands (server-wide `INFO commandstats`, calls in scripts included); over the "
        "window, PostgreSQL sessions and Redis connections opened."
    )
    tops_text = "Top Redis commands per order:\n\n" + "\n".join(tops)
    return f"## Cost per order\n\n{about}\n\n{table(COST_HEADER.split('|'), rows)}\n\n{tops_text}"


def _phase(name: str, phase: dict[str, Any]) -> str:
    """A phase's figures, one row each, in the order the phase wrote them."""
    rows = [[key.replace("_", " "), value] for key, value in phase.items() if key not in LEFT_OUT]
    own = phase.get("table")  # a phase's own table ({header, rows}) comes first
    head = f"{table(own['header'], own['rows'])}\n\n" if own else ""
    return f"## {name}\n\n{head}" + table(["measure", "value"], rows)


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    for path in write(folder, json.loads((folder / "result.json").read_text())):
        print(path)
