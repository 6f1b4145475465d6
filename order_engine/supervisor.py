"""Run several long-lived processes as one group, with labelled, interleaved logs.

Each child gets its own session (process group), so Ctrl-C reaches only the supervisor, which
then asks every child to stop in an orderly way (SIGTERM to the main process only, as Celery
wants), waits, and kills whatever is left. A child that dies on its own is restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RESTART_DELAY_S = 1.0
STOP_GRACE_S = 20.0


@dataclass
class Program:
    label: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _pump: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, programs: Sequence[Program], env: Mapping[str, str]) -> None:
        self.programs = list(programs)
        self.env = dict(env)
        self.width = max(len(p.label) for p in self.programs)
        self._stopping = threading.Event()
        self._print_lock = threading.Lock()

    def run(self) -> int:
        """Start every program and supervise until SIGINT/SIGTERM; return an exit status."""
        previous = {
            sig: signal.signal(sig, lambda *_: self._stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for program in self.programs:
                self._start(program)
            while not self._stopping.wait(0.2):
                for program in self.programs:
                    self._restart_if_dead(program)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def stop(self) -> None:
        self._stopping.set()
        running = [(p, p.process) for p in self.programs if p.process and p.process.poll() is None]
        for program, process in running:
            self.say(program.label, "stopping")
            _signal(process, signal.SIGTERM, group=False)
        deadline = time.monotonic() + STOP_GRACE_S
        for program, process in running:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                self.say(program.label, "did not stop in time; killing")
        # Anything left in a child's group (pool processes, threads' helpers) goes too.
        for program in self.programs:
            if program.process is not None:
                _signal(program.process, signal.SIGKILL, group=True)
                program.process.wait()
            if program._pump is not None:
                program._pump.join(timeout=2)

    def say(self, label: str, line: str) -> None:
        with self._print_lock:
            sys.stdout.write(f"{label:<{self.width}} | {line}\n")
            sys.stdout.flush()

    def _start(self, program: Program) -> None:
        program.process = subprocess.Popen(
            program.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.say(program.label, f"started (pid {program.process.pid}): {' '.join(program.argv)}")
        program._pump = threading.Thread(target=self._pump_output, args=(program,), daemon=True)
        program._pump.start()

    def _restart_if_dead(self, program: Program) -> None:
        code = program.process.poll() if program.process else None
        if code is None or self._stopping.is_set():
            return
        program.restarts += 1
        self.say(program.label, f"exited with {code}; restarting (restart {program.restarts})")
        # Don't spin if the program cannot start at all.
        if self._stopping.wait(RESTART_DELAY_S * min(program.restarts, 10)):
            return
        self._start(program)

    def _pump_output(self, program: Program) -> None:
        assert program.process is not None
        assert program.process.stdout is not None
        for raw in iter(program.process.stdout.readline, b""):
            self.say(program.label, raw.decode(errors="replace").rstrip())


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals, *, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass
