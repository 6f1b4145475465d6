"""Write the run's results: `result.json` (everything), `report.md` and its PNG plots.

The Markdown opens with the DESIGN §7 targets, the figure reached and pass/miss, then the
CPU each process group used in each phase (the first evidence for any miss), then the detail
of every measurement, the settings, the machine and the versions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench import plots
from bench.stats import summary

GROUPS = ("api", "worker", "scheduler", "localnet", "postgres", "redis", "loadgen")
TARGET_WS = 2000
TARGET_E2E_RATE = 100  # DESIGN §7 (the long-run goal is 200 with p99 < 4 s)
TARGET_P99_S = 6
TARGET_WINDOW_S = 60
# DESIGN §7 cost per order (issue 10).
TARGET_ENGINE_MS, TARGET_POSTGRES_MS, TARGET_LOCALNET_MS, TARGET_REDIS_COMMANDS = 10, 4, 4, 15
# Issue 13: the trigger engine.
TARGET_TRIGGER_PCT, TARGET_TRIGGER_WAITING = 5, 100_000
TARGET_TRIGGER_P99_MS, TARGET_TRIGGER_CROSSING = 1000, 1000
RATE_TOLERANCE = 0.98  # the open-loop generator's own timing noise
SOAK_MINUTES = 10


def write(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    results["cpu_by_phase"] = cpu_by_phase(results.get("samples", []))
    results["memory"] = memory(results)
    results["targets"] = targets(results)
    json_path = run_dir / "result.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    images = _plots(run_dir, results)
    md_path = run_dir / "report.md"
    md_path.write_text(markdown(results, images))
    return [json_path, md_path]


# -- derived figures ----------------------------------------------------------------------------


def cpu_by_phase(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean CPU per phase: the machine (% of all cores) and each group (% of one core)."""
    cores = os.cpu_count() or 1
    phases: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        phases.setdefault(sample["phase"], []).append(sample)
    rows = []
    for phase, group in phases.items():
        row = {
            "phase": phase,
            "seconds": len(group),
            "machine_pct": round(sum(s["cpu"] for s in group) / len(group), 1),
            "cores": cores,
        }
        for name in (*GROUPS, "postgres_bench"):
            # .get: a run from before the localnet was a process of its own has no such group.
            cpu = sum(s["groups"].get(name, {}).get("cpu", 0.0) for s in group)
            row[name] = round(cpu / len(group), 1)
        # Whatever else ran on the machine meanwhile (other users' tests, this process).
        row["other"] = round(max(0.0, row["machine_pct"] * cores - sum(row[g] for g in GROUPS)), 1)
        rows.append(row)
    return rows


def memory(results: dict[str, Any]) -> dict[str, Any]:
    """RSS of each group over the run, and the worker's growth over the soak (or the run)."""
    samples = results.get("samples", [])
    out: dict[str, Any] = {}
    for name in ("api", "worker"):
        values = [s["groups"][name]["rss_mb"] for s in samples if s["groups"][name]["rss_mb"]]
        out[name] = summary(values, 1) if values else None
    phase = "e2e_soak" if "soak" in results.get("phases", {}) else "e2e_default"
    rss = [s["groups"]["worker"]["rss_mb"] for s in samples if s["phase"].startswith(phase)]
    rss = [v for v in rss if v]
    out["worker_growth"] = _growth(rss, phase)
    return out


def _growth(rss: list[float], phase: str) -> dict[str, Any] | None:
    """Mean RSS of the last sixth against the first sixth (after the first, warm-up sixth)."""
    if len(rss) < 12:
        return None
    sixth = len(rss) // 6
    first = sum(rss[sixth : 2 * sixth]) / sixth
    last = sum(rss[-sixth:]) / sixth
    return {
        "phase": phase,
        "minutes": round(len(rss) / 60, 1),
        "first_mb": round(first, 1),
        "last_mb": round(last, 1),
        "growth_pct": round((last - first) / first * 100, 1),
    }


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per DESIGN §7 target: what was asked, what was reached, pass/miss."""
    phases = results.get("phases", {})
    rows = []
    rows += _intake_targets(phases.get("intake"))
    rows += _e2e_targets(phases.get("e2e-default"))
    rows += _peer_targets(phases.get("peer"))
    rows += _cost_targets(phases)
    rows += _ws_targets(phases.get("ws"))
    rows += _trigger_targets(phases.get("triggers"))
    rows.append(_memory_target(results["memory"].get("worker_growth")))
    return rows


def _row(target: str, figure: str, ok: bool | None, note: str = "") -> dict[str, str]:
    verdict = "n/a" if ok is None else ("pass" if ok else "**miss**")
    return {"target": target, "figure": figure, "verdict": verdict, "note": note}


def _intake_targets(intake: dict[str, Any] | None) -> list[dict[str, str]]:
    if not intake:
        return [_row("Intake ≥ 70 % of the baseline's req/s", "not run", None)]
    medians = intake["saturation_median_per_s"]
    ratio, p99 = intake["ratio_engine_to_baseline"], intake["engine_p99_ms_at_200"]
    return [
        _row(
            "Intake ≥ 70 % of the baseline's req/s (saturation)",
            f"{_pct(ratio)} ({medians['engine']:.0f} vs {medians['baseline']:.0f} req/s)",
            ratio is not None and ratio >= 0.70,
            "worker stopped",
        ),
        _row(
            "Intake p99 < 25 ms at 200 req/s",
            f"{p99} ms",
            p99 is not None and p99 < 25,
            "open loop, worker stopped",
        ),
    ]


def _e2e_targets(e2e: dict[str, Any] | None) -> list[dict[str, str]]:
    if not e2e:
        return [_row("End to end (default latency)", "not run", None)]
    short = e2e["window_s"] < TARGET_WINDOW_S
    note = f"window {e2e['window_s']:.0f} s (target 60 s)" if short else ""
    steady = e2e["steady_completed_per_s"] or 0.0
    p99 = e2e["accept_to_confirmed_ms"]["p99"]
    return [
        _row(
            f"≥ {TARGET_E2E_RATE} orders/s sustained for 60 s, default latency (open loop)",
            f"{steady} orders/s completed (offered {e2e['offered_per_s']}/s, accepted "
            f"{e2e['accepted_per_s']}/s)",
            steady >= TARGET_E2E_RATE * RATE_TOLERANCE,
            note,
        ),
        _row(
            "None lost (accepted but not terminal by the drain deadline)",
            f"{e2e['lost']} of {e2e['accepted']}",
            e2e["lost"] == 0,
            note,
        ),
        _row(
            f"p99 accept → confirmed < {TARGET_P99_S} s, default latency",
            "n/a (none confirmed)"
            if p99 is None
            else f"{p99 / 1000:.2f} s (of the {e2e['accept_to_confirmed_ms']['count']} "
            f"confirmed; the {e2e['lost']} unfinished would only raise it)",
            p99 is not None and p99 < TARGET_P99_S * 1000 and e2e["lost"] == 0,
            note,
        ),
    ]


def _peer_targets(peer: dict[str, Any] | None) -> list[dict[str, str]]:
    if not peer:
        return []
    note = f"peer load: {peer['accepted']} orders, {peer['connections']} connections"
    p99 = peer["accept_to_confirmed_ms"]["p99"]
    rate = peer["orders_per_s"] or 0.0
    return [
        _row(
            f"≥ {TARGET_E2E_RATE} orders/s end to end (peer load)",
            f"{rate} orders/s ({peer['completed']} terminal in {peer['span_s']} s)",
            rate >= TARGET_E2E_RATE,
            note,
        ),
        _row(
            f"p99 accept → confirmed < {TARGET_P99_S} s (peer load), none lost",
            "n/a" if p99 is None else f"{p99 / 1000:.2f} s, {peer['lost']} lost",
            p99 is not None and p99 < TARGET_P99_S * 1000 and peer["lost"] == 0,
            note,
        ),
        _row(
            "Every status stream exact (peer load)",
            f"{peer['streams_exact_pct']} % ({peer['streams_exact']} of {peer['streams']})",
            peer["streams"] > 0 and peer["streams_exact"] == peer["streams"],
            note,
        ),
    ]


def _cost_targets(phases: dict[str, Any]) -> list[dict[str, str]]:
    """Judged on the peer load if it ran, else on end to end at the default latency."""
    name = next((n for n in ("peer", "e2e-default") if (phases.get(n) or {}).get("cost")), None)
    if name is None:
        return []
    cost = phases[name]["cost"]
    cpu = cost["cpu_ms_per_order"]
    note = f"`{name}`, {cost['orders']} orders"
    rows = [
        _row(
            f"Engine (API + worker + scheduler) ≤ {TARGET_ENGINE_MS} ms CPU per order",
            f"{cpu['engine']} ms (API {cpu.get('api')}, worker {cpu.get('worker')}, "
            f"scheduler {cpu.get('scheduler')})",
            cpu["engine"] <= TARGET_ENGINE_MS,
            note,
        ),
        _row(
            f"PostgreSQL ≤ {TARGET_POSTGRES_MS} ms CPU per order",
            f"{cpu.get('postgres')} ms (server; the bench database's backends "
            f"{cpu.get('postgres_bench')} ms)",
            cpu.get("postgres") is not None and cpu["postgres"] <= TARGET_POSTGRES_MS,
            note,
        ),
        _row(
            f"Localnet ≤ {TARGET_LOCALNET_MS} ms CPU per order",
            f"{cpu.get('localnet')} ms",
            cpu.get("localnet") is not None and cpu["localnet"] <= TARGET_LOCALNET_MS,
            note,
        ),
    ]
    redis_cost = cost.get("redis")
    if redis_cost:
        # Judged on the stack's own databases (MONITOR) when tapped: the server-wide figure
        # also counts whoever else uses the server.
        tap = redis_cost.get("stack_databases")
        per_order = tap["total_per_order"] if tap else redis_cost["commands_per_order"]
        figure = (
            f"{per_order} ({tap['sent_per_order']} sent + {tap['in_scripts_per_order']} in "
            f"Lua scripts; server-wide `INFO commandstats` {redis_cost['commands_per_order']})"
            if tap
            else f"{per_order} (server-wide `INFO commandstats`)"
        )
        rows.append(
            _row(
                f"≤ {TARGET_REDIS_COMMANDS} Redis commands per order",
                figure,
                per_order <= TARGET_REDIS_COMMANDS,
                note,
            )
        )
    pg = cost.get("postgres")
    if pg:
        opened = pg["sessions_opened"]
        rows.append(
            _row(
                "No PostgreSQL connection opened during a burst",
                f"{opened} opened ({pg['sessions_source']}); {cost['backends_seen']} new "
                "backends seen",
                opened == 0 if opened is not None else cost["backends_seen"] == 0,
                note,
            )
        )
    return rows


def _ws_targets(ws: dict[str, Any] | None) -> list[dict[str, str]]:
    if not ws:
        return [_row("2,000 WebSocket subscribers, lag p99 < 100 ms", "not run", None)]
    short = ws["requested"] < TARGET_WS
    note = f"only {ws['requested']} subscribers (--quick)" if short else ""
    # Served means connected and streamed to the terminal event, not just a handshake.
    served = ws["complete_streams"]
    all_served = served >= TARGET_WS and ws["connection_failures"] == 0
    closes = ", ".join(
        f"{n} × {'no close frame' if code == 'None' else code}"
        for code, n in ws["close_codes"].items()
    )
    return [
        _row(
            f"{TARGET_WS:,} concurrent WebSocket subscribers on one API host",
            f"{ws['connected']} of {ws['requested']} connected, {served} streamed to the end "
            f"(close codes: {closes})",
            None if short and served == ws["requested"] else all_served,
            note,
        ),
        _ws_lag_target(ws, note),
    ]


def _ws_lag_target(ws: dict[str, Any], note: str) -> dict[str, str]:
    """Judged from the publish, as DESIGN §7 asks: the Redis tap's receipt → the client's.

    `at` is stamped before the worker commits and publishes, so `at` → client also counts the
    worker's side; it is shown beside the figure, never judged. Without the tap's times there
    is no verdict, whatever `at` → client says.
    """
    target = "Event delivery lag p99 < 100 ms from the worker's publish"
    whole, worker, api = ws["lag_ms"], ws["lag_at_to_redis_ms"], ws["lag_redis_to_socket_ms"]
    tap = ws["tap"]
    if whole["p99"] is None:
        return _row(target, "no live event reached a client", False, note)
    beside = f"`at` → client p99 {whole['p99']} ms"
    if api["p99"] is None:
        # The last line: a traceback from `bench.procs` would break the table.
        why = (tap["error"] or tap["reconnect_cause"] or "no error reported").strip()
        why = why.splitlines()[-1]
        figure = f"not measured: the Redis tap recorded no event ({why}); {beside}"
        return _row(target, figure, None, _join(note, "Redis tap failed"))
    figure = (
        f"p99 {api['p99']} ms from the publish (p50 {api['p50']} ms; {beside}, of which "
        f"the worker's commit+publish p99 {worker['p99']} ms), {ws['live_events']} live events"
    )
    gaps = []
    if api["count"] < ws["live_events"]:
        gaps.append(f"the tap saw {api['count']} of the {ws['live_events']} live events")
    if tap["reconnects"]:
        gaps.append(f"{tap['reconnects']} tap reconnect(s)")
    if tap["error"]:
        gaps.append("tap error (see §4)")
    if tap["after_client"]:
        gaps.append(
            f"the tap read {tap['after_client']} events after their client did (by up to "
            f"{tap['after_client_max_ms']} ms), so the figure reads up to that much low"
        )
    return _row(target, figure, api["p99"] < 100, _join(note, "; ".join(gaps)))


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _trigger_targets(triggers: dict[str, Any] | None) -> list[dict[str, str]]:
    """Judged on the worker + scheduler (everything the engine spends on evaluations)."""
    if not triggers:
        return []
    idle, empty, cross = triggers["idle_waiting"], triggers["idle_empty"], triggers["crossing"]
    pct, per = idle["cpu_pct_of_core"], idle["cpu_ms_per_evaluation"]
    waiting_note = (
        f"only {idle['orders']:,} waiting (--quick)"
        if idle["orders"] < TARGET_TRIGGER_WAITING
        else f"{idle['orders']:,} waiting"
    )
    p99 = cross["move_to_routing_ms"]["p99"]
    all_routed = cross["routed"] == cross["accepted"] > 0
    crossing_note = f"{cross['accepted']:,} crossed at once" + (
        " (--quick)" if cross["accepted"] < TARGET_TRIGGER_CROSSING else ""
    )
    return [
        _row(
            f"Trigger evaluation < {TARGET_TRIGGER_PCT} % of one core, nothing triggering",
            f"{pct['engine']} % (worker {pct['worker']}, scheduler {pct['scheduler']}; "
            f"{per['engine']} ms CPU per evaluation); none waiting: "
            f"{empty['cpu_pct_of_core']['engine']} %",
            pct["engine"] < TARGET_TRIGGER_PCT and idle["triggered"] == 0,
            waiting_note,
        ),
        _row(
            "p99 crossing slot → `routing` < 1 s",
            "n/a"
            if p99 is None
            else f"{p99 / 1000:.2f} s (then `routing` → `building` p99 "
            f"{_seconds(cross['routing_to_building_ms']['p99'])}); {cross['routed']} of "
            f"{cross['accepted']} routed",
            p99 is not None and p99 < TARGET_TRIGGER_P99_MS and all_routed,
            crossing_note,
        ),
    ]


def _memory_target(growth: dict[str, Any] | None) -> dict[str, str]:
    """Judged only on a soak of about 10 minutes; a shorter window is shown, not judged."""
    target = "Worker memory flat over a 10-minute soak (≤ 10 % growth)"
    if not growth:
        return _row(target, "not measured", None)
    figure = f"{growth['growth_pct']:+.1f} % ({growth['first_mb']} → {growth['last_mb']} MiB)"
    if growth["minutes"] < SOAK_MINUTES * 0.95:
        note = f"only {growth['minutes']} min of `{growth['phase']}`; run --soak-minutes 10"
        return _row(target, figure, None, note)
    return _row(target, figure, growth["growth_pct"] <= 10)


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.0f} %"


# -- plots ---------------------------------------------------------------------------------------


def _plots(run_dir: Path, results: dict[str, Any]) -> dict[str, str]:
    if not plots.AVAILABLE:
        return {}
    phases, images = results.get("phases", {}), {}
    if "intake" in phases:
        images["intake"] = plots.intake(phases["intake"], run_dir / "intake.png").name
    for name in ("e2e-zero", "e2e-default", "soak"):
        if name in phases:
            path = plots.end_to_end(phases[name], f"End to end: {name}", run_dir / f"{name}.png")
            images[name] = path.name
    if "ws" in phases and phases["ws"]["lag_samples_ms"]:
        images["ws"] = plots.lag_histogram(phases["ws"]["lag_samples_ms"], run_dir / "ws.png").name
    if results.get("samples"):
        images["resources"] = plots.resources(results["samples"], run_dir / "resources.png").name
    return images


# -- Markdown ------------------------------------------------------------------------------------


def markdown(results: dict[str, Any], images: dict[str, str]) -> str:
    from bench import report_md

    return report_md.render(results, images)


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


if __name__ == "__main__":
    # Re-render a run's report from its result.json: python -m bench.report <run folder>
    import sys

    folder = Path(sys.argv[1])
    for path in write(folder, json.loads((folder / "result.json").read_text())):
        print(path)


def _seconds(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.2f} s"
