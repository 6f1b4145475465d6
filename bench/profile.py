"""Optional sampling profiles (`--profile`): py-spy attaches to a server process under load
(--nonblocking) and samples its threads on a CPU into `profile-<label>.txt` in the run folder
(collapsed stacks: speedscope and flamegraph.pl open them). Not `--gil`: under gevent the thread
holding the GIL is often one waiting in the hub, and such profiles counted about twice the
process's measured CPU.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

RATE_HZ = 100


class Profiler:
    """py-spy processes by label: `start` one per process under load, `finish` it (or let it
    end at its `--duration`); `stop_all` on the way out."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.run_dir, self.binary = run_dir, found if enabled and Path(found).exists() else None
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    @property
    def enabled(self) -> bool:
        return self.binary is not None

    def start(
        self, label: str, pids: list[int], duration_s: float = 0, children: bool = False
    ) -> None:
        """Sample the first of `pids` for `duration_s` or until `finish` (and its children with
        `children`: all of gunicorn's workers)."""
        if self.binary is None or not pids:
            return
        out = self.run_dir / f"profile-{label}.txt"
        argv = [self.binary, "record", "--pid", str(pids[0]), "--rate", str(RATE_HZ)]
        argv += ["--nonblocking", "--format", "raw", "--output", str(out)]
        argv += (["--duration", str(int(duration_s))] if duration_s else []) + (
            ["--subprocesses"] if children else []
        )
        with (self.run_dir / "logs" / f"py-spy-{label}.log").open("wb") as log:
            self.running[label] = (subprocess.Popen(argv, stdout=log, stderr=log), out)

    def finish(self, label: str, timeout_s: float = 30) -> str | None:
        """Stop (SIGINT: py-spy writes its output) and wait; the profile's file name."""
        if label not in self.running:
            return None
        process, out = self.running.pop(label)
        if "--duration" not in process.args:  # type: ignore[operator]
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return out.name if out.exists() else None

    def stop_all(self) -> None:
        for process, _ in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()
