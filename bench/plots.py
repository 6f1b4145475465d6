"""PNG plots for the report. matplotlib is optional (the `bench` extra): without it the
report is still written, with a line saying how to get the plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

plt: Any
try:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover - depends on the installed extras
    plt = None

AVAILABLE = plt is not None


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def intake(result: dict[str, Any], path: Path) -> Path:
    """p50 and p99 latency against the offered rate, engine beside baseline."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for endpoint, style in (("engine", "-"), ("baseline", "--")):
        steps = result["open_loop"][endpoint]
        rates = sorted(steps, key=int)
        for pct, marker in (("p50", "o"), ("p99", "s")):
            values = [steps[r]["latency_ms"][pct] for r in rates]
            ax.plot(
                [int(r) for r in rates], values, style, marker=marker, label=f"{endpoint} {pct}"
            )
    ax.axhline(25, color="red", linewidth=0.8, label="target p99 at 200/s")
    ax.set(
        xlabel="offered requests/s (open loop)",
        ylabel="latency ms",
        yscale="log",
        title="Intake latency",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def end_to_end(result: dict[str, Any], title: str, path: Path) -> Path:
    """Completions per second, and the backlog (queue, orders in flight) over time."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    per_second = result["completions_per_second"]
    top.bar(range(len(per_second)), per_second, width=1.0, label="orders terminal per s")
    top.axhline(result["offered_per_s"], color="red", linewidth=0.8, label="offered rate")
    top.axvline(result["window_s"], color="grey", linestyle=":", label="load stops")
    top.set(ylabel="orders/s", title=title)
    top.legend(fontsize=8)
    times = [t["t"] for t in result["timeline"]]
    bottom.plot(times, [t.get("in_flight", 0) for t in result["timeline"]], label="in flight")
    if any(t.get("queue") is not None for t in result["timeline"]):
        bottom.plot(times, [t.get("queue") or 0 for t in result["timeline"]], label="queued")
    bottom.set(xlabel="seconds since the load started", ylabel="orders")
    bottom.legend(fontsize=8)
    return _save(fig, path)


def lag_histogram(samples_ms: list[float], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(samples_ms, bins=60)
    ax.axvline(100, color="red", linewidth=0.8, label="target p99")
    ax.set(
        xlabel="delivery lag ms (client receipt − event at)",
        ylabel="events",
        title="WebSocket event delivery lag",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def resources(samples: list[dict[str, Any]], path: Path) -> Path:
    """RSS of the API and the worker, and CPU by group, over the whole run."""
    fig, (mem, cpu) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    start = samples[0]["t"]
    times = [s["t"] - start for s in samples]
    for group in ("api", "worker"):
        mem.plot(times, [s["groups"][group]["rss_mb"] for s in samples], label=group)
    mem.set(ylabel="RSS MiB", title="Memory and CPU over the run")
    mem.legend(fontsize=8)
    for group in ("api", "worker", "scheduler", "localnet", "postgres", "redis", "loadgen"):
        values = [s["groups"].get(group, {}).get("cpu", 0.0) for s in samples]
        cpu.plot(times, values, label=group, linewidth=0.8)
    cores = os.cpu_count() or 1
    cpu.plot(
        times, [s["cpu"] * cores for s in samples], "k:", label=f"machine ({cores * 100} = all)"
    )
    cpu.set(xlabel="seconds", ylabel="CPU % of one core")
    cpu.legend(fontsize=7, ncol=3)
    _shade_phases(cpu, samples, start)
    return _save(fig, path)


def _shade_phases(ax: Any, samples: list[dict[str, Any]], start: float) -> None:
    """A line where each phase starts; a label only where the phase is long enough to read."""
    starts = [i for i, s in enumerate(samples) if i == 0 or s["phase"] != samples[i - 1]["phase"]]
    for index, first in enumerate(starts):
        last = starts[index + 1] if index + 1 < len(starts) else len(samples)
        moment = samples[first]["t"] - start
        ax.axvline(moment, color="grey", linewidth=0.4)
        if last - first >= 8:
            ax.text(
                moment,
                ax.get_ylim()[1] * 0.95,
                samples[first]["phase"],
                rotation=90,
                fontsize=6,
                va="top",
            )
