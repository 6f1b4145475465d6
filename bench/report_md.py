"""The Markdown report: tables of the figures in `result.json`, in reading order."""

from __future__ import annotations

import json
from typing import Any

from bench import plots

PCTS = ("p50", "p95", "p99", "max")
GROUP_COLUMNS = ("api", "worker", "scheduler", "localnet", "postgres", "redis", "loadgen", "other")
COST_PHASES = ("e2e-zero", "e2e-default", "soak", "peer", "triggers")
COST_COLUMNS = (
    ("engine", "engine"),
    ("api", "API"),
    ("worker", "worker"),
    ("scheduler", "scheduler"),
    ("localnet", "localnet"),
    ("postgres", "PostgreSQL"),
    ("postgres_bench", "… bench db backends"),
    ("redis", "Redis"),
    ("loadgen", "load client"),
)
ERROR_CODES = (
    "Error `-1`: never sent, no connection came free by the end of the window + 2 s (the "
    "server was behind); `0`: no answer within 30 s or a connection error."
)


def render(results: dict[str, Any], images: dict[str, str]) -> str:
    phases = results.get("phases", {})
    parts = [
        _header(results),
        _targets(results["targets"]),
        _limits(results),
        _cpu(results["cpu_by_phase"]),
        _cost(phases),
        _peer(phases.get("peer")),
        _triggers(phases.get("triggers"), results["cpu_by_phase"]),
        _intake(phases.get("intake"), images),
        _noop(phases.get("celery")),
        *(_e2e(name, phases.get(name), images) for name in ("e2e-zero", "e2e-default", "soak")),
        _ws(phases.get("ws"), images),
        _memory(results["memory"], images),
        _profiles(phases),
        _settings(results),
        _machine(results.get("machine")),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pcts(values: dict[str, Any]) -> str:
    return " / ".join(f"{p} {values.get(p)}" for p in ("p50", "p95", "p99"))


def _latency_cells(latency: dict[str, Any]) -> list[Any]:
    return [latency.get(p) for p in PCTS]


def _header(results: dict[str, Any]) -> str:
    from bench.report import stamp

    minutes = (results["finished_at"] - results["started_at"]) / 60
    lines = [
        f"# Order Engine benchmark — {results['plan']['name']} run",
        "",
        f"Started {stamp(results['started_at'])}, took {minutes:.1f} min. Everything (servers, "
        "worker, load generators) shares this machine's cores, so compare ratios within one "
        "run rather than absolute figures across runs; the `other` CPU column shows what else "
        "ran meanwhile.",
    ]
    if results.get("interrupted"):
        lines.append("\n**Interrupted**: the figures below cover only the phases that finished.")
    if results.get("errors"):
        lines.append("\n**Errors:**\n\n```\n" + "\n".join(results["errors"]) + "\n```")
    if not plots.AVAILABLE:
        lines.append("\n(No plots: install the `bench` extra, `pip install -e '.[bench]'`.)")
    return "\n".join(lines)


def _targets(rows: list[dict[str, str]]) -> str:
    return "## DESIGN §7 targets\n\n" + _table(
        ["target", "reached", "verdict", "note"],
        [[r["target"], r["figure"], r["verdict"], r["note"]] for r in rows],
    )


def _limits(results: dict[str, Any]) -> str:
    """Plain evidence for the usual suspects: a full CPU, and the worker's concurrency."""
    lines = [_busy_line(row) for row in results["cpu_by_phase"]]
    for name, phase in results.get("phases", {}).items():
        capacity = phase.get("littles_law")
        if capacity:
            lines.append(
                f"- `{name}`: {capacity['concurrency']} worker threads ÷ "
                f"{capacity['task_s']:.2f} s per task (claim → confirmed) = at most "
                f"{capacity['max_per_s']:.1f} orders/s (Little's law)."
            )
    lines = [line for line in lines if line]
    return "## What limits the figures\n\n" + "\n".join(lines) if lines else ""


def _busy_line(row: dict[str, Any]) -> str:
    if row["machine_pct"] < 85 or row["seconds"] < 3:
        return ""
    top = sorted(((row[g], g) for g in GROUP_COLUMNS), reverse=True)[:3]
    users = ", ".join(f"{g} {v:.0f} %" for v, g in top)
    return (
        f"- `{row['phase']}`: the machine's CPU was {row['machine_pct']:.0f} % busy "
        f"(of {row['cores']} cores); top users: {users} (of one core)."
    )


def _cpu(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    return (
        "## CPU by phase\n\nMachine: mean % of all cores. Groups: mean % of one core (a group "
        "at 100 % keeps one core busy); `other` is everything else on the machine.\n\n"
        + _table(
            ["phase", "s", "machine %", *GROUP_COLUMNS],
            [
                [r["phase"], r["seconds"], r["machine_pct"], *(r[g] for g in GROUP_COLUMNS)]
                for r in rows
            ],
        )
    )


def _cost(phases: dict[str, Any]) -> str:
    """CPU ms per order of each group, and the servers' counters per order, per phase."""
    costs = {n: phases[n]["cost"] for n in COST_PHASES if (phases.get(n) or {}).get("cost")}
    if not costs:
        return ""
    cpu_rows = [
        [name, c["orders"], c["window_s"], *(c["cpu_ms_per_order"].get(k) for k, _ in COST_COLUMNS)]
        for name, c in costs.items()
    ]
    server_rows = []
    redis_lines = []
    for name, c in costs.items():
        pg, rd = c.get("postgres") or {}, c.get("redis") or {}
        tap = rd.get("stack_databases") or {}
        server_rows.append(
            [
                name,
                pg.get("commits_per_order"),
                pg.get("rollbacks_per_order"),
                rd.get("commands_per_order"),
                f"{tap.get('sent_per_order')} + {tap.get('in_scripts_per_order')}" if tap else "",
                pg.get("sessions_opened"),
                c.get("backends_seen"),
                rd.get("connections_opened"),
                rd.get("other_clients"),
            ]
        )
        if rd.get("top"):
            top = ", ".join(f"`{cmd}` {per}" for cmd, _, per in rd["top"])
            redis_lines.append(f"- `{name}`, server-wide (`INFO commandstats`): {top}")
        if tap.get("top_sent"):
            sent = ", ".join(f"`{cmd}` {per}" for cmd, _, per in tap["top_sent"])
            ran = ", ".join(f"`{cmd}` {per}" for cmd, _, per in tap["top_in_scripts"])
            redis_lines.append(
                f"- `{name}`, the stack's databases (MONITOR): sent {sent}; in scripts "
                f"{ran or 'none'}; {tap['other_databases_commands']} commands to other "
                "databases were left out"
            )
    return "\n\n".join(
        [
            "## Cost per order",
            "CPU milliseconds per terminal order of each process group, from each process's "
            "own CPU counters (user + system, with its reaped children: a PostgreSQL backend "
            "forked for one connection counts in full) between the load's first request and "
            "its last terminal order. `engine` = API + worker + scheduler. `PostgreSQL` is "
            "the whole server (other databases' clients on it count too); `… bench db "
            "backends` only the backends seen connected to the bench database, sampled each "
            "second (a lower bound). The load client runs on the same cores.",
            _table(
                ["phase", "orders", "window s", *(title for _, title in COST_COLUMNS)], cpu_rows
            ),
            "Per order: PostgreSQL transactions committed and rolled back in the bench "
            "database (`pg_stat_database`), Redis commands (`INFO commandstats`, summed over "
            "the servers the stack uses: server-wide, and it counts the calls inside Lua "
            "scripts too) and, with `--redis-tap` (a MONITOR tap, off by default: it costs about 1 "
            "ms of CPU per order), the commands the stack's clients sent to its own Redis "
            "databases + those their scripts ran; over the window: PostgreSQL "
            "sessions opened (`pg_stat_database.sessions`), new bench-database backends the "
            "monitor saw, Redis connections received, and clients of other Redis databases (their "
            "commands would be counted too). The benchmark's own queries are left out.",
            _table(
                [
                    "phase",
                    "commits",
                    "rollbacks",
                    "Redis commands",
                    "… stack dbs: sent + in scripts",
                    "PG sessions opened",
                    "backends seen",
                    "Redis connections",
                    "other Redis clients",
                ],
                server_rows,
            ),
            "Top Redis commands per order:\n\n" + "\n".join(redis_lines) if redis_lines else "",
        ]
    )


def _peer(peer: dict[str, Any] | None) -> str:
    if not peer:
        return ""
    rows = [
        [
            "orders posted / accepted",
            f"{peer['posted']} / {peer['accepted']} over {peer['connections']} connections, "
            f"in {peer['post_phase_s']} s ({peer['posted_per_s']}/s)",
        ],
        ["servers", peer["servers"]],
        [
            "**orders/s** (terminal ÷ first post → last terminal)",
            f"**{peer['orders_per_s']}** ({peer['completed']} in {peer['span_s']} s)",
        ],
        ["accept → terminal ms", _pcts(peer["accept_to_terminal_ms"])],
        ["accept → confirmed ms", _pcts(peer["accept_to_confirmed_ms"])],
        ["accept → terminal seen on the WebSocket ms", _pcts(peer["accept_to_terminal_seen_ms"])],
        ["intake latency ms", _pcts(peer["intake_latency_ms"])],
        ["final status", peer["final_status"]],
        ["lost (accepted, not terminal)", peer["lost"]],
        ["failures", peer["failures"] or "none"],
        ["HTTP errors", peer["http_errors"] or "none"],
        [
            "**exact status streams**",
            f"**{peer['streams_exact_pct']} %** ({peer['streams_exact']} of {peer['streams']}; "
            f"{peer['streams_connected']} connected)",
        ],
        ["inexact streams, why", peer["stream_faults"] or "none"],
        ["stream errors", peer["stream_errors"] or "none"],
        ["close codes", peer["close_codes"]],
        ["WebSocket handshake ms", _pcts(peer["connect_ms"])],
    ]
    return "\n\n".join(
        [
            "## Peer load (issue 10): one client, N orders over C connections, a WebSocket each",
            f"The client posts {peer['orders_requested']} orders back to back over "
            f"{peer['connections']} connections and opens one WebSocket per order as its 202 "
            f"arrives (swap latency {peer['latency']['DEX_SWAP_LATENCY_MS']} ms). A stream is "
            "exact when it got every event once, in seq order, ending with the terminal one. "
            "Its cost per order is in the table above.",
            _table(["measure", "value"], rows),
        ]
    )


TRIGGER_GROUPS = (
    ("worker", "worker"),
    ("scheduler", "scheduler (beat)"),
    ("engine", "**worker + scheduler**"),
    ("postgres", "PostgreSQL (server)"),
    ("postgres_bench", "… bench db backends"),
    ("localnet", "localnet (serves the pools' read)"),
    ("redis", "Redis"),
)


def _triggers(triggers: dict[str, Any] | None, cpu_rows: list[dict[str, Any]]) -> str:
    if not triggers:
        return ""
    empty, idle, cross = triggers["idle_empty"], triggers["idle_waiting"], triggers["crossing"]
    idle_rows = [
        [
            title,
            empty["cpu_ms_per_evaluation"].get(key),
            empty["cpu_pct_of_core"].get(key),
            idle["cpu_ms_per_evaluation"].get(key),
            idle["cpu_pct_of_core"].get(key),
        ]
        for key, title in TRIGGER_GROUPS
    ]
    load = {r["phase"]: r for r in cpu_rows}

    def window(name: str, w: dict[str, Any]) -> str:
        row = load.get(name, {})
        wall = w["evaluation_wall_ms"]
        return (
            f"{w['evaluations']} evaluations in {w['window_s']} s"
            + ("" if w.get("evaluations_counted", True) else " (from beat's rate: no trace lines)")
            + f", each p50 {wall['p50']} / "
            f"p95 {wall['p95']} / max {wall['max']} ms wall (Celery's trace), {w['triggered']} "
            f"triggered; machine {row.get('machine_pct')} % busy of {row.get('cores')} cores, "
            f"{row.get('other')} % of a core used outside the stack"
        )

    evaluations = ", ".join(f"+{at:.0f} ms: {n}" for at, n in cross["evaluations"]) or "none"
    cross_rows = [
        [
            "limit orders submitted / accepted / waiting before the move",
            f"{cross['requested']} / {cross['accepted']} / {cross['waiting_before_move']} "
            f"(SOL → USDC 0.01, limitPrice {cross['limit_price']})",
        ],
        ["their intake latency ms", _pcts(cross["intake_latency_ms"])],
        [
            "the move (`localnet_move` SOL/USDC)",
            f"{cross['price_before']} → {cross['moved_to']}, with {idle['orders']:,} other "
            "orders still waiting",
        ],
        [
            "**move → `routing` (trigger) ms**",
            _pcts(cross["move_to_routing_ms"]) + f" / max {cross['move_to_routing_ms']['max']}",
        ],
        [
            "`routing` → `building` ms (waiting for the executor)",
            _pcts(cross["routing_to_building_ms"])
            + f" / max {cross['routing_to_building_ms']['max']}",
        ],
        ["routed", f"{cross['routed']} of {cross['accepted']} (all: {cross['all_routed']})"],
        ["evaluations that triggered them (since the move: orders)", evaluations],
        ["re-armed by the worker (market moved back before its quote)", cross["rearmed"]],
        ["final status (drained: " + str(cross["drained"]) + ")", cross["final_status"]],
        ["failures", cross["failures"] or "none"],
    ]
    return "\n\n".join(
        [
            "## Trigger engine (issue 13)",
            f"The stack as `make run` starts it: the worker, Celery beat sending "
            f"`orders.evaluate_triggers` every {triggers['interval_ms']} ms to the control "
            f"queue, the localnet at swap latency {triggers['latency']['DEX_SWAP_LATENCY_MS']} "
            f"ms. Two idle windows, the market random-walking: first with no waiting order, "
            f"then with {idle['orders']:,} waiting limit orders over {idle['pair_directions']} "
            f"pair directions (written by SQL in {idle['written_s']} s, limits 2-12x the best "
            "price, so none triggers). CPU per evaluation is each group's CPU over the window "
            "(its processes' own counters, 10 ms ticks) divided by the evaluations the worker "
            "ran meanwhile; it includes Celery's own work per task (receiving it, its task "
            "events) and the reconciler's runs on the same worker.",
            _table(
                [
                    "group",
                    "none waiting: CPU ms / evaluation",
                    "% of one core",
                    f"{idle['orders']:,} waiting: CPU ms / evaluation",
                    "% of one core",
                ],
                idle_rows,
            ),
            f"- none waiting: {window('triggers_idle_empty', empty)}\n"
            f"- {idle['orders']:,} waiting: {window('triggers_idle_waiting', idle)}",
            f"Then {cross['requested']} limit orders through the API (the bench key), the "
            "market moved across all of them at once, each order followed from the move to "
            "its `routing` event (written by the trigger engine, which routes the order as it "
            "triggers it: data `triggered` and the route decision) and on to the executor's "
            "`building` event. One evaluation quotes at most 1,000 candidates per pair. The "
            "`triggers` row of the cost table above is this crossing, from the move to the "
            "last terminal order.",
            _table(["measure", "value"], cross_rows),
        ]
    )


def _intake(intake: dict[str, Any] | None, images: dict[str, str]) -> str:
    if not intake:
        return ""
    saturation_rows = [
        [endpoint, i + 1, r["req_per_s"], *_latency_cells(r["latency_ms"]), r["errors"] or ""]
        for endpoint, runs in intake["saturation"].items()
        for i, r in enumerate(runs)
    ]
    rate_rows = [
        [
            endpoint,
            rate,
            step["achieved_per_s"],
            *_latency_cells(step["latency_ms"]),
            step["errors"] or "",
        ]
        for endpoint, steps in intake["open_loop"].items()
        for rate, step in steps.items()
    ]
    parts = [
        "## 1. Intake: `POST /api/orders/execute` beside `POST /bench/baseline`",
        f"Worker {intake['worker']}. Saturation: {intake['concurrency']} closed-loop clients; "
        f"ratio of the medians engine ÷ baseline = **{intake['ratio_engine_to_baseline']}**. "
        "Fixed rates: open loop, latency in ms from each request's due time, so a server "
        f"that falls behind shows it as latency. {ERROR_CODES}",
        _table(["endpoint", "run", "req/s", *PCTS, "errors"], saturation_rows),
        _table(["endpoint", "offered/s", "achieved/s", *PCTS, "errors"], rate_rows),
    ]
    if "intake" in images:
        parts.append(f"![intake latency]({images['intake']})")
    return "\n\n".join(parts)


def _noop(noop: dict[str, Any] | None) -> str:
    if not noop:
        return ""
    if "error" in noop:
        return f"## 2. Bare Celery round trip\n\nFailed:\n\n```\n{noop['error']}\n```"
    return (
        "## 2. Bare Celery round trip (framework ceiling)\n\n"
        f"{noop['completed']} of {noop['count']} `bench.noop` tasks through the product's "
        f"worker in {noop['elapsed_s']} s: **{noop['tasks_per_s']} tasks/s** from the first "
        f"send to the last completion (the producer alone sent {noop['send_rate']}/s)."
    )


def _e2e(name: str, e2e: dict[str, Any] | None, images: dict[str, str]) -> str:
    if not e2e:
        return ""
    latency = e2e["latency"]
    rows = [
        [
            "offered / accepted",
            f"{e2e['offered_per_s']}/s for {e2e['window_s']:.0f} s / "
            f"{e2e['accepted']} ({e2e['accepted_per_s']}/s)",
        ],
        ["terminal per s, steady (5 s to the window's end)", e2e["steady_completed_per_s"]],
        ["terminal per s, overall (to the last completion)", e2e["overall_completed_per_s"]],
        ["accept → confirmed ms", _pcts(e2e["accept_to_confirmed_ms"])],
        ["created_at → confirmed ms", _pcts(e2e["created_to_confirmed_ms"])],
        ["intake latency ms", _pcts(e2e["intake_latency_ms"])],
        ["final status", e2e["final_status"]],
        ["lost (not terminal by the drain deadline)", f"{e2e['lost']} (drained: {e2e['drained']})"],
        ["retried orders / failures", f"{e2e['retried_orders']} / {e2e['failures'] or 0}"],
        ["HTTP errors", e2e["http_errors"] or 0],
        ["sessions waiting on a lock (sampled each second)", _pcts(e2e["lock_waits"])],
        ["statements seen waiting on a lock (samples)", _waits(e2e.get("lock_wait_queries"))],
        ["orders created whose 202 the client never got", e2e.get("created_without_reply")],
    ]
    status_rows = [[s, *_latency_cells(v)] for s, v in e2e["time_in_status_ms"].items()]
    parts = [
        f"## 3. End to end: {name} (swap {latency['DEX_SWAP_LATENCY_MS']} ms)",
        _table(["measure", "value"], rows),
        ERROR_CODES,
        "Time in each status (ms, between consecutive events' `at`). `pending` includes the "
        "queue wait and the quote (pool accounts read over RPC, priced in the worker): the "
        "`routing` event is written once the quote is in.",
        _table(["status", *PCTS], status_rows),
    ]
    if name in images:
        parts.append(f"![{name}]({images[name]})")
    return "\n\n".join(parts)


def _waits(queries: list[list[Any]] | None) -> str:
    if not queries:
        return "none"
    cells = [f"{count} × `{_cell(query)}`" for query, count in queries]
    return "<br>".join(cells)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _ws(ws: dict[str, Any] | None, images: dict[str, str]) -> str:
    if not ws:
        return ""
    tap = ws["tap"]
    rows = [
        ["subscribers requested / orders created", f"{ws['requested']} / {ws['orders_created']}"],
        ["connected / failed to connect", f"{ws['connected']} / {ws['connection_failures']}"],
        ["stream errors", ws["stream_errors"] or "none"],
        ["complete streams (every seq once, in order, terminal last)", ws["complete_streams"]],
        ["close codes", ws["close_codes"]],
        ["handshake ms", _pcts(ws["connect_ms"])],
        ["all connected after", f"{ws['connect_phase_s']} s"],
        ["live events", ws["live_events"]],
        ["lag ms, `at` → client", _pcts(ws["lag_ms"]) + f" / max {ws['lag_ms']['max']}"],
        ["… of which `at` → Redis (worker commits, publishes)", _pcts(ws["lag_at_to_redis_ms"])],
        [
            "… of which Redis → client (API hub, socket handler; the target's measure)",
            _pcts(ws["lag_redis_to_socket_ms"]) + f" / max {ws['lag_redis_to_socket_ms']['max']}",
        ],
        ["Redis tap: events received / reconnects", _tap(tap)],
        ["API settings", ws["api_settings"]],
        ["threads per gunicorn process at peak", ws["api_threads_peak"]],
    ]
    by_status = [[s, *_latency_cells(v)] for s, v in ws["lag_ms_by_status"].items()]
    parts = [
        "## 4. Live updates over WebSockets",
        "The worker is stopped while the orders are created and every socket connects, then "
        f"started (localnet latency {ws['worker_latency']}); an event's lag is the client's "
        "receipt time minus its `at` (`at` has ms precision, so lags read up to 1 ms high). `at` "
        "is stamped before the worker commits and publishes, so a bare Redis subscriber beside "
        "the clients (the tap) splits the lag in two, and the target is judged from its receipt: "
        f"Redis → client. {_socket_cost(ws['api_worker_class'])}",
        _table(["measure", "value"], rows),
        _table(["status", *PCTS], by_status),
    ]
    if ws["load_generator_errors"]:
        parts.append(
            "**Load generator errors** (subscribers, tap):\n\n```\n"
            + "\n".join(ws["load_generator_errors"])
            + "\n```"
        )
    if "ws" in images:
        parts.append(f"![lag]({images['ws']})")
    return "\n\n".join(parts)


def _tap(tap: dict[str, Any]) -> str:
    reconnects = "n/a" if tap["reconnects"] is None else tap["reconnects"]
    cells = [f"{tap['events']} / {reconnects}"]
    if tap["reconnect_cause"]:
        cells.append(f"last reconnect after {_cell(tap['reconnect_cause'])}")
    if tap["after_client"]:
        cells.append(
            f"{tap['after_client']} read after their client had them (by up to "
            f"{tap['after_client_max_ms']} ms: Redis → client reads that much low)"
        )
    if tap["unreadable"]:
        cells.append(f"{tap['unreadable']} messages not events")
    if tap["error"]:
        cells.append("failed (see the errors below)")
    return "; ".join(cells)


def _socket_cost(worker_class: str) -> str:
    """What one socket costs in the API that ran (`API_WORKER_CLASS`, gevent by default)."""
    if worker_class == "gevent":
        return (
            "The API runs gevent workers: each socket is a pair of greenlets (its handler and "
            "simple-websocket's reader), not OS threads."
        )
    return (
        f"The API runs {worker_class} workers: each socket holds an OS thread (its handler) plus "
        "simple-websocket's reader thread."
    )


def _memory(memory: dict[str, Any], images: dict[str, str]) -> str:
    rows = [
        [g, (memory[g] or {}).get("p50"), (memory[g] or {}).get("max")] for g in ("api", "worker")
    ]
    parts = [
        "## 5. Memory (RSS of each process tree, MiB)",
        _table(["group", "median", "max"], rows),
    ]
    growth = memory.get("worker_growth")
    if growth:
        parts.append(
            f"Worker growth over {growth['minutes']} min of `{growth['phase']}` (last sixth "
            f"against the second sixth): {growth['growth_pct']:+.1f} %."
        )
    if "resources" in images:
        parts.append(f"![resources]({images['resources']})")
    return "\n\n".join(parts)


def _profiles(phases: dict[str, Any]) -> str:
    found = dict(phases.get("intake", {}).get("profiles", {}) or {})
    for label, profile in ((phases.get("peer") or {}).get("profiles") or {}).items():
        found[label] = profile
    for name in ("e2e-zero", "ws"):
        if phases.get(name, {}).get("profile"):
            found[f"{name} ({'worker' if name == 'e2e-zero' else 'one API process'})"] = phases[
                name
            ]["profile"]
    found = {k: v for k, v in found.items() if v and v.get("samples")}
    if not found:
        return ""
    parts = ["## 6. Profiles (py-spy, threads on a CPU: where the Python CPU went)"]
    for label, profile in found.items():
        libraries = ", ".join(f"{n} {p} %" for n, p in profile["self_by_library_pct"][:10])
        files = ", ".join(f"`{f}`" for f in profile.get("files", []))
        parts.append(
            f"**{label}** ({profile['samples']} samples). Self time by library: {libraries}."
            + (f" Files: {files}." if files else "")
        )
        if profile.get("self_top_pct"):
            parts.append(_table(["own CPU (self)", "%"], profile["self_top_pct"][:10]))
        parts.append(_table(["on the stack (inclusive)", "%"], profile["inclusive_top_pct"]))
    return "\n\n".join(parts)


def _settings(results: dict[str, Any]) -> str:
    settings = results.get("settings", {})
    plan_rows = [[k, v] for k, v in results["plan"].items()]
    commands = "\n".join(f"{k}: {' '.join(v)}" for k, v in settings.get("commands", {}).items())
    return (
        "## Settings\n\n"
        + _table(["plan", "value"], plan_rows)
        + "\n\nCommands (last start of each):\n\n```\n"
        + commands
        + "\n```\n\n"
        "Environment of the last start of each process (URLs omitted):\n\n```json\n"
        + json.dumps(settings.get("env", {}), indent=1)
        + "\n```"
    )


def _machine(machine: dict[str, Any] | None) -> str:
    if not machine:
        return ""
    rows = [[k, v] for k, v in machine.items() if k != "packages"]
    rows += [[f"package {k}", v] for k, v in machine["packages"].items()]
    return "## Machine and versions\n\n" + _table(["", ""], rows)
