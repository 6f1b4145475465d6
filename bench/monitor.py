"""Sample CPU and memory of every process group once a second, labelled by phase.

This runs as a thread of the benchmark's own process, which generates no load (the load
generators are separate processes), so the samples see the servers and the load generators
side by side: on a 2-core machine, "the CPU was full, and here is who used it" is the first
thing to know about any missed target.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

INTERVAL_S = 1.0

# A group: a name and a function returning the pids at the root of its process trees.
RootPids = Callable[[], list[int]]


class Monitor:
    def __init__(self, groups: dict[str, RootPids]) -> None:
        self.groups = groups
        self.samples: list[dict[str, Any]] = []
        self.phase = "setup"
        self._known: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def phase_samples(self, phase: str) -> list[dict[str, Any]]:
        return [s for s in self.samples if s["phase"] == phase]

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                self.samples.append(self._sample())
            except psutil.Error:
                continue  # a process vanished mid-sample; the next tick will be consistent

    def _sample(self) -> dict[str, Any]:
        groups = {}
        for name, roots in self.groups.items():
            groups[name] = self._group(roots())
        return {
            "t": time.time(),
            "phase": self.phase,
            "cpu": psutil.cpu_percent(interval=None),
            "groups": groups,
        }

    def _group(self, root_pids: list[int]) -> dict[str, Any]:
        procs = []
        for process in self._trees(root_pids):
            try:
                with process.oneshot():
                    procs.append(
                        [
                            process.pid,
                            process.cpu_percent(interval=None),
                            process.memory_info().rss / 2**20,
                            process.num_threads(),
                        ]
                    )
            except psutil.Error:
                continue
        return {
            "cpu": round(sum(p[1] for p in procs), 1),
            "rss_mb": round(sum(p[2] for p in procs), 1),
            "threads": sum(p[3] for p in procs),
            "procs": [
                [pid, round(cpu, 1), round(rss, 1), threads] for pid, cpu, rss, threads in procs
            ],
        }

    def _trees(self, root_pids: list[int]) -> list[psutil.Process]:
        found = []
        for pid in root_pids:
            root = self._process(pid)
            if root is None:
                continue
            found.append(root)
            try:
                found.extend(self._process(c.pid) or c for c in root.children(recursive=True))
            except psutil.Error:
                continue
        return found

    def _process(self, pid: int) -> psutil.Process | None:
        """The same Process object every tick, so cpu_percent measures since the last one."""
        process = self._known.get(pid)
        if process is None or not process.is_running():
            try:
                process = self._known[pid] = psutil.Process(pid)
            except psutil.Error:
                return None
        return process


def processes_named(*names: str) -> list[int]:
    """Pids of processes with one of these names (servers the benchmark did not start)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in names]
