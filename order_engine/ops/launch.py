"""Start the engine's processes as children, wait until they serve, and stop them.

The tests (tests/support/stack.py) and the benchmark (bench/stack.py) run the localnet, the API
(gunicorn), Celery workers and beat this way, each from the command line `make run` gives it
(`order_engine.ops.programs`: same interpreter, gunicorn config module, worker class, pool,
concurrency and queues from the same settings), changed only where a launched stack must differ,
and each change is said where it is made. Unlike `order_engine.ops.supervisor`, a `Launcher`
restarts nothing: the fault tests kill processes and decide when one comes back, and the
benchmark restarts the worker between phases.

Every child runs in a session of its own, so stopping it also ends what it left in its group
(gunicorn's workers, a pool's children). Whoever makes a `Launcher` closes it on every way out:
`close()` stops every child it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from order_engine.config import Settings, _process_environment
from order_engine.ops.programs import (
    CELERY_APP,
    api_program,
    localnet_program,
    scheduler_program,
    worker_program,
)

WSGI_APP = "order_engine.wsgi:app"


class LaunchError(RuntimeError):
    """A child did not become ready: it exited, or the deadline passed (the message says which,
    with the end of its log)."""


# -- processes ---------------------------------------------------------------------------------


def start_process(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (so its whole group can be killed), output to a log."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds its own descriptor
    try:
        return subprocess.Popen(
            list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM (Celery and gunicorn then shut down cleanly), SIGKILL to the group after
    `timeout_s`, and whatever the process left in its group (pool children) goes too."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    ready: Callable[[], object],
    timeout_s: float,
    what: str,
    *,
    every_s: float = 0.1,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `ready` until it returns something truthy (an exception counts as not yet: a server
    that is still starting refuses connections); LaunchError once `process` exits or the
    deadline passes."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise LaunchError(f"{what}: the process exited with {process.returncode}")
        try:
            if ready():
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet; the last error is reported
            last_error = exc
        time.sleep(every_s)
    raise LaunchError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last_error!r})")


def answers(url: str, timeout_s: float = 2) -> bool:
    """Whether GET `url` answers 200 (the API's /readyz: its database and Redis reachable)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def rpc(url: str, method: str, params: object = None, timeout_s: float = 10) -> object:
    """One JSON-RPC call to a Solana-style node (the localnet); raises on an error object."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        reply = json.load(response)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


# -- production's command lines, with what a launched stack needs changed ------------------------


def child_settings(env: Mapping[str, str]) -> Settings:
    """The settings a child with environment `env` reads: `.env`, overlaid by `env`."""
    return Settings.from_env({**_process_environment(), **env})


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    """Replace the value after `option` (gunicorn appends a repeated --bind, so never add one)."""
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def localnet_argv() -> list[str]:
    # localnet_program ignores its settings (the localnet reads its own environment).
    return list(localnet_program(None).argv)  # type: ignore[arg-type]


def api_argv(
    settings: Settings, port: int, *, host: str = "127.0.0.1", app: str = WSGI_APP
) -> list[str]:
    """gunicorn exactly as `make run` starts it, bound to `host:port` (loopback by default: a
    launched stack picks a free port and serves nobody else), optionally serving another WSGI
    app (the benchmark's, which is the product's app with its own routes added)."""
    argv = _with_option(list(api_program(settings).argv), "--bind", f"{host}:{port}")
    argv[argv.index(WSGI_APP)] = app
    return argv


def worker_argv(
    settings: Settings,
    hostname: str,
    *,
    app: str = CELERY_APP,
    queues: str | None = None,
    loglevel: str | None = None,
) -> list[str]:
    """The Celery worker exactly as `make run` starts it, but named `hostname` (production runs
    one worker per host; a launched stack may run several on one), optionally as another
    Celery app that wraps production's (the tests' sender-fault app, the benchmark's no-op
    tasks), on other queues (a control-only worker) or at another log level (tests wait for its
    " ready." line, logged at INFO)."""
    argv = _with_option(list(worker_program(settings).argv), "-A", app)
    argv = _with_option(argv, "--hostname", hostname)
    if queues is not None:
        argv = _with_option(argv, "--queues", queues)
    return argv if loglevel is None else _with_option(argv, "--loglevel", loglevel)


def scheduler_argv(
    settings: Settings, schedule_file: Path, *, loglevel: str | None = None
) -> list[str]:
    """Celery beat exactly as `make run` starts it, but with its own schedule file (production
    keeps one in .state/, which two launched stacks must not share)."""
    argv = _with_option(list(scheduler_program(settings).argv), "--schedule", str(schedule_file))
    return argv if loglevel is None else _with_option(argv, "--loglevel", loglevel)


# -- a set of named children ---------------------------------------------------------------------


@dataclass
class Launcher:
    """Named children, each logging to `log_dir/<name>-<n>.log` (its n-th start), stopped by
    `stop`, `kill` or `close`; a name runs at most once at a time."""

    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)  # the last of each name
    starts: Counter[str] = field(default_factory=Counter)

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        if self.running(name):
            raise LaunchError(f"{name} is already running")
        self.starts[name] += 1
        self.commands[name] = list(argv)
        self.processes[name] = start_process(argv, env, self.log_path(name))
        return self.processes[name]

    def running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def wait(
        self, name: str, ready: Callable[[], object], what: str, timeout_s: float = 60
    ) -> None:
        """Until `ready()`; LaunchError with the end of the log if `name` exits first."""
        try:
            wait_for(ready, timeout_s, what, process=self.processes[name])
        except LaunchError as error:
            raise LaunchError(f"{error}\n--- {name}'s log ---\n{self.log(name)[-4000:]}") from None

    def wait_log(self, name: str, needle: str, timeout_s: float = 60) -> None:
        """Until the latest log of `name` has `needle` (a worker's " ready.", beat's "beat:
        Starting")."""
        self.wait(name, lambda: needle in self.log(name), f"{name} to log {needle!r}", timeout_s)

    def stop(self, name: str, timeout_s: float = 15) -> None:
        process = self.processes.get(name)
        if process is not None:
            stop_process(process, timeout_s)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal one child; SIGKILL also reaps what is left in its group."""
        process = self.processes[name]
        os.kill(process.pid, sig)
        if sig == signal.SIGKILL:
            process.wait(15)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def close(self, timeout_s: float = 15, last: Sequence[str] = ("localnet",)) -> None:
        """Stop every child, in parallel (each may take its grace period), those named in
        `last` after the others (workers finishing their swaps still need the chain)."""
        for group in (
            [p for n, p in self.processes.items() if n not in last],
            [p for n, p in self.processes.items() if n in last],
        ):
            threads = [threading.Thread(target=stop_process, args=(p, timeout_s)) for p in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def log_path(self, name: str, start: int | None = None) -> Path:
        """Where one start of a child logs (the latest by default)."""
        return self.log_dir / f"{name}-{start or self.starts[name]}.log"

    def log(self, name: str, start: int | None = None) -> str:
        path = self.log_path(name, start)
        return path.read_text(errors="replace") if path.exists() else ""

    # the engine's processes

    def start_localnet(
        self, env: Mapping[str, str], port: int, host: str = "127.0.0.1", timeout_s: float = 30
    ) -> str:
        """`order-engine localnet serve` as `make run` starts it, on `host:port`; its URL once
        it answers getHealth."""
        url = f"http://{host}:{port}"
        self.start(
            "localnet", localnet_argv(), {**env, "LOCALNET_HOST": host, "LOCALNET_PORT": str(port)}
        )
        self.wait("localnet", lambda: rpc(url, "getHealth", timeout_s=1) == "ok", url, timeout_s)
        return url

    def start_api(
        self,
        env: Mapping[str, str],
        port: int,
        *,
        app: str = WSGI_APP,
        extra: Sequence[str] = (),
        wait: bool = True,
    ) -> list[str]:
        """gunicorn (`api_argv` with `extra` options appended) with environment `env`, waiting
        until /readyz answers 200 unless `wait` is false; returns its command line."""
        argv = [*api_argv(child_settings(env), port, app=app), *extra]
        self.start("api", argv, env)
        if wait:
            self.wait_api(port)
        return argv

    def wait_api(self, port: int, timeout_s: float = 60) -> None:
        url = f"http://127.0.0.1:{port}/readyz"
        self.wait("api", lambda: answers(url), f"the API to answer {url}", timeout_s)
