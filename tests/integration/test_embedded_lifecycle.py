"""The embedded default's servers: started by one owner, stopped on every exit path, adopted
when their owner is gone; and the commands that run without DATABASE_URL / REDIS_URL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from order_engine.services.reconciler import HEARTBEAT_KEY

pytestmark = pytest.mark.integration

# Owns the embedded servers of a state folder until SIGTERM, then stops them (or, SIGKILLed,
# leaves them running as orphans, like a crashed `make run`).
OWNER_SCRIPT = """
import signal, sys
from pathlib import Path
from order_engine.ops import embedded

def stop(*_):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)
servers = embedded.start(Path(sys.argv[1]))
try:
    print(servers.redis_url, flush=True)
    while True:
        signal.pause()
finally:
    servers.stop()
"""


def embedded_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.pop("CELERY_BROKER_URL", None)
    return {**env, "ORDER_ENGINE_STATE_DIR": str(state_dir), **extra}


def servers_in(state_dir: Path) -> list[psutil.Process]:
    """Processes whose command line or working directory is in the state folder (postgres
    names its data directory; redis-server runs in its own)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            where = " ".join(process.info["cmdline"] or ()) + " " + (process.info["cwd"] or "")
            if str(state_dir) in where:
                found.append(process)
    return found


def postgres_and_redis(state_dir: Path) -> list[psutil.Process]:
    postmaster = int((state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    redis_server = int((state_dir / "redis" / "redis.pid").read_text())
    return [psutil.Process(postmaster), psutil.Process(redis_server)]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    yield directory
    # Whatever a failed test left running in its folder goes.
    for process in servers_in(directory):
        with contextlib.suppress(psutil.Error):
            process.kill()


def start_owner(state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(state_dir)],
        env=embedded_env(state_dir),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    redis_url = owner.stdout.readline().strip()
    assert redis_url.startswith("redis://"), redis_url
    return owner, redis_url


def order_engine(state_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "order_engine.ops.cli", *args],
        env=embedded_env(state_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_configuration_error_leaves_no_embedded_server_running(state_dir):
    result = order_engine(state_dir, "run", PORT="eighty")

    assert result.returncode == 2, result.stderr
    assert "PORT must be a whole number" in result.stderr
    assert servers_in(state_dir) == []


def test_servers_orphaned_by_a_killed_owner_are_adopted_and_stopped(state_dir):
    owner, _ = start_owner(state_dir)
    orphans = postgres_and_redis(state_dir)
    owner.kill()  # like a crashed `make run`: nobody will stop its servers
    owner.wait(10)
    assert all(process.is_running() for process in orphans)

    result = order_engine(state_dir, "migrate")

    assert result.returncode == 0, result.stderr
    assert "adopting embedded postgres" in result.stderr
    gone, alive = psutil.wait_procs(orphans, timeout=20)
    assert alive == []


def test_servers_of_a_live_owner_are_reused_and_left_running(state_dir):
    owner, _ = start_owner(state_dir)
    try:
        servers = postgres_and_redis(state_dir)

        result = order_engine(state_dir, "migrate")

        assert result.returncode == 0, result.stderr
        assert all(process.is_running() for process in servers)
    finally:
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(30) == 0
    gone, alive = psutil.wait_procs(servers, timeout=20)
    assert alive == []


def test_check_worker_uses_the_embedded_servers_like_make_run(state_dir):
    owner, redis_url = start_owner(state_dir)
    try:
        unhealthy = order_engine(state_dir, "check-worker")
        assert unhealthy.returncode == 1, unhealthy.stderr
        assert "the reconciler last ran never" in unhealthy.stderr

        with redis.Redis.from_url(redis_url) as client:
            client.set(HEARTBEAT_KEY, f"{time.time():.3f}")
        healthy = order_engine(state_dir, "check-worker")
        assert healthy.returncode == 0, healthy.stderr
        assert "healthy" in healthy.stdout
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(30)


def test_check_worker_without_running_servers_says_so_and_starts_nothing(state_dir):
    result = order_engine(state_dir, "check-worker")

    assert result.returncode == 2
    assert "embedded servers" in result.stderr
    assert "not running" in result.stderr
    assert servers_in(state_dir) == []
