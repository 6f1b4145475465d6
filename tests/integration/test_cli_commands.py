"""`order-engine` as a newcomer meets it: a command prints what it was asked for and says on
stderr which server it talks to; logs stay out of the way unless asked for (`-v`); client
commands touch no server of their own; the ports `make run` chose are found from its folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from order_engine.services.reconciler import HEARTBEAT_KEY
from tests.support.clients import TEST_API_KEY

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "order_engine.ops.cli"]
# Variables that would name a server or a folder for the commands: each test says its own.
CHOSEN = (
    "DATABASE_URL",
    "REDIS_URL",
    "ORDER_ENGINE_URL",
    "ORDER_ENGINE_STATE_DIR",
    "LOCALNET_PORT",
    "ORDER_ENGINE_API_KEY",
    "ORDER_ENGINE_KEY",
)


def run(*args: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CHOSEN}
    return subprocess.run(
        [*CLI, *args], env={**base, **env}, capture_output=True, text=True, timeout=timeout_s
    )


def arrows(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("→ ")]


def write_run_file(state_dir: Path, **fields: object) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    recorded = {"pid": os.getpid(), "startedAt": time.time(), **fields}
    (state_dir / "run.json").write_text(json.dumps(recorded))


def test_keys_commands_print_what_was_asked_and_which_database(test_settings, tmp_path):
    env = {**test_settings, "ORDER_ENGINE_STATE_DIR": str(tmp_path)}
    account = f"a-long-account-name-{uuid.uuid4().hex}"
    created = run(
        "keys", "create", "--account", account, "--name", "make run (development) for a while",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert len(created.stdout.splitlines()) == 2, created.stdout  # what it did, then the key
    assert created.stderr.splitlines() == arrows(created.stderr), created.stderr
    [where] = arrows(created.stderr)
    assert "postgresql" in where
    listed = run("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if account in line)
    assert "make run (development) for a while" in row  # neither cut
    assert listed.stderr.splitlines() == arrows(listed.stderr), listed.stderr
    verbose = run("-v", "keys", "list", env=env)
    assert verbose.returncode == 0
    assert " INFO " in verbose.stderr or '"INFO"' in verbose.stderr, verbose.stderr


def test_a_call_on_the_embedded_servers_is_quiet_and_migrates_once(test_settings, tmp_path):
    env = {k: v for k, v in test_settings.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "ORDER_ENGINE_STATE_DIR": str(tmp_path / "state")
    }
    first = run("-v", "keys", "list", env=env)
    assert first.returncode == 0, first.stderr
    assert "Running upgrade" in first.stderr  # a fresh database: migrated, and -v shows it
    again = run("keys", "list", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].split()[:2] == ["prefix", "account"]
    assert again.stderr.splitlines() == arrows(again.stderr), again.stderr
    verbose = run("-v", "keys", "list", env=env)
    assert "Running upgrade" not in verbose.stderr  # at head: not migrated again
    assert "stopping embedded servers" in verbose.stderr


def test_client_commands_start_no_server_and_say_which_api(tmp_path):
    state = tmp_path / "state"
    env = {"ORDER_ENGINE_STATE_DIR": str(state)}
    refused = run("orders", "list", "--url", "http://127.0.0.1:9", env=env)
    assert refused.returncode == 4
    assert arrows(refused.stderr) == ["→ http://127.0.0.1:9"]
    assert "cannot reach the API" in refused.stderr
    assert not state.exists()


def test_client_and_localnet_commands_use_the_ports_make_run_wrote(live_stack, tmp_path):
    localnet_url = live_stack.settings["SOLANA_RPC_URL"]
    write_run_file(tmp_path, api=live_stack.base_url, localnet=localnet_url)
    env = {"ORDER_ENGINE_STATE_DIR": str(tmp_path), "ORDER_ENGINE_API_KEY": TEST_API_KEY}
    listed = run("orders", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert arrows(listed.stderr) == [f"→ {live_stack.base_url}"]
    status = run("localnet", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert arrows(status.stderr) == [f"→ {localnet_url}"]
    # The environment and the flag still win over the file.
    elsewhere = run("orders", "list", env={**env, "ORDER_ENGINE_URL": "http://127.0.0.1:9"})
    assert arrows(elsewhere.stderr) == ["→ http://127.0.0.1:9"]
    flagged = run("localnet", "status", "--url", "http://127.0.0.1:9", env=env)
    assert arrows(flagged.stderr) == ["→ http://127.0.0.1:9"]
    # A file whose run is gone is not read.
    write_run_file(tmp_path, api=live_stack.base_url, pid=2**22 + 1)
    gone = run("orders", "list", env=env)
    assert arrows(gone.stderr) == ["→ http://localhost:8000"]


def test_check_worker_allows_a_start_up_grace_then_says_unhealthy(test_settings, tmp_path):
    redis.Redis.from_url(test_settings["REDIS_URL"]).delete(HEARTBEAT_KEY)
    env = {**test_settings, "ORDER_ENGINE_STATE_DIR": str(tmp_path)}
    write_run_file(tmp_path, startedAt=time.time() - 2)
    starting = run("check-worker", env=env)
    assert starting.returncode == 0, starting.stderr
    assert starting.stdout.startswith("starting:"), starting.stdout
    write_run_file(tmp_path, startedAt=time.time() - 3600)
    late = run("check-worker", env=env)
    assert late.returncode == 1
    assert "unhealthy: the reconciler last ran never" in late.stderr
