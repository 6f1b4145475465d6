"""Run several long-lived processes as one group, with labelled, interleaved logs.

Each child gets its own session (process group), so Ctrl-C reaches only the supervisor, which
then asks every child to stop in an orderly way (SIGTERM to the main process only, as Celery
wants), waits for that child's grace period, and kills whatever is left. A child that dies on
its own is restarted.

Stopping is bounded whatever happens to the supervisor itself: each child is started with a
parent-death signal (Linux `PR_SET_PDEATHSIG`), so if the supervisor is killed (SIGKILL to
`make`'s process group, an OOM kill) its children get SIGTERM at once instead of running on in
their own sessions; and a supervisor whose stdout is gone (closed terminal, broken pipe) keeps
draining its children's output and still stops them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RESTART_DELAY_S = 1.0
STOP_GRACE_S = 20.0
_PR_SET_PDEATHSIG = 1


@dataclass
class Program:
    label: str
    argv: Sequence[str]
    # How long the program may take to stop after SIGTERM before it is killed.
    stop_grace_s: float = STOP_GRACE_S
    # Stopped only after the others have exited (the chain, while workers finish their swaps).
    stop_last: bool = False
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
        self._output_gone = False

    def run(self) -> int:
        """Start every program and supervise until SIGINT/SIGTERM; return an exit status."""
        previous = {
            sig: signal.signal(sig, lambda *_: self._stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
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
        self._stop_group([p for p in self.programs if not p.stop_last])
        self._stop_group([p for p in self.programs if p.stop_last])
        # Anything left in a child's group (pool processes, threads' helpers) goes too.
        for program in self.programs:
            if program.process is not None:
                _signal(program.process, signal.SIGKILL, group=True)
                program.process.wait()
            if program._pump is not None:
                program._pump.join(timeout=2)

    def _stop_group(self, programs: Sequence[Program]) -> None:
        """SIGTERM to each running program's main process, then wait out each one's grace."""
        running = [(p, p.process) for p in programs if p.process and p.process.poll() is None]
        for program, process in running:
            self.say(program.label, "stopping")
            _signal(process, signal.SIGTERM, group=False)
        started = time.monotonic()
        for program, process in running:
            remaining = max(0.1, started + program.stop_grace_s - time.monotonic())
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                self.say(program.label, f"did not stop within {program.stop_grace_s:.0f}s; killing")
                _signal(process, signal.SIGKILL, group=True)

    def say(self, label: str, line: str) -> None:
        """Print one labelled line; never raises, so a lost stdout cannot stop supervision."""
        self.say_raw(f"{label:<{self.width}} | {line}")

    def say_raw(self, line: str) -> None:
        with self._print_lock:
            if self._output_gone:
                return
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):  # EPIPE, EIO from a closed terminal, closed file
                self._output_gone = True

    def _start(self, program: Program) -> None:
        program.process = subprocess.Popen(
            program.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
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
            line = raw.decode(errors="replace").rstrip()
            labelled = _json_with_process(line, program.label)
            if labelled is not None:
                self.say_raw(labelled)
            else:
                self.say(program.label, line)


def _json_with_process(line: str, label: str) -> str | None:
    """A JSON log line (LOG_FORMAT=json) stays one JSON object: the process's label goes in as
    `"process"` instead of a prefix. None for any other line."""
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    return json.dumps({"process": label, **record}, ensure_ascii=False)


def _prctl() -> Any:
    global _PRCTL_FN
    if _PRCTL_FN is None:
        name = ctypes.util.find_library("c")
        _PRCTL_FN = getattr(ctypes.CDLL(name), "prctl", False) if name else False
    return _PRCTL_FN or None


# libc's prctl, looked up once: None before the first look, False where there is none.
_PRCTL_FN: Any = None


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when this process dies (Linux).

    libc is resolved here, in the parent: the child runs only async-signal-safe calls.
    """
    prctl = _prctl()
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals, *, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass
