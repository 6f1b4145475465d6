"""Child processes that tests start and always stop, and free loopback ports for them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

from order_engine.config import Settings
from order_engine.ops.cli import CELERY_APP, api_program, scheduler_program, worker_program


def start_process(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (so its whole group can be killed), output to a log."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL to the group after `timeout_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Whatever the process left in its group (pool children) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- production's command lines, with what a test stack needs changed --------------------------


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def localnet_program_argv() -> list[str]:
    from order_engine.ops.cli import localnet_program

    # localnet_program ignores its settings (the localnet reads its own environment).
    return list(localnet_program(None).argv)  # type: ignore[arg-type]


def api_argv(settings: dict[str, str], port: int) -> list[str]:
    """gunicorn exactly as `make run` starts it (order_engine.ops.cli), bound to loopback: a test
    picks a free port and serves nobody else."""
    argv = api_program(Settings.from_env(settings)).argv
    return _with_option(list(argv), "--bind", f"127.0.0.1:{port}")


def worker_argv(
    settings: dict[str, str],
    name: str,
    *,
    app: str = CELERY_APP,
    queues: str | None = None,
) -> list[str]:
    """The Celery worker exactly as `make run` starts it, but named `name@%h` (production runs
    one worker per host; a test runs several on one), always logging at INFO (tests wait for
    its " ready." line), optionally as another Celery app (the sender-fault test app, which
    wraps production's) or on other queues (a control-only worker)."""
    argv = list(worker_program(Settings.from_env(settings)).argv)
    argv = _with_option(argv, "--loglevel", "INFO")
    argv = _with_option(argv, "-A", app)
    if queues is not None:
        argv = _with_option(argv, "--queues", queues)
    return _with_option(argv, "--hostname", f"{name}@%h")


def scheduler_argv(settings: dict[str, str], schedule_file: Path) -> list[str]:
    """Celery beat exactly as `make run` starts it, but with its own schedule file (production
    keeps one in .state/, which two test stacks must not share) and at INFO (tests wait for its
    "beat: Starting" line)."""
    argv = list(scheduler_program(Settings.from_env(settings)).argv)
    argv = _with_option(argv, "--schedule", str(schedule_file))
    return _with_option(argv, "--loglevel", "INFO")
