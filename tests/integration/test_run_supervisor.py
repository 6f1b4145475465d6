import json
import os
import signal
import subprocess
import sys
import urllib.request

import psutil
import pytest
import redis

from order_engine.ops.launch import free_port
from order_engine.services.reconciler import HEARTBEAT_KEY
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration


def test_run_serves_readyz_refuses_a_second_run_and_ctrl_c_leaves_no_process_behind(
    test_settings, tmp_path
):
    port = free_port()
    env = {
        **os.environ,
        **test_settings,
        "PORT": str(port),
        "WORKER_CONCURRENCY": "2",
        "WEB_CONCURRENCY": "1",
        "ORDER_ENGINE_STATE_DIR": str(tmp_path),
        "RECONCILE_INTERVAL_S": "1",
    }
    # A heartbeat left by an earlier run must not count for this one.
    redis.Redis.from_url(test_settings["REDIS_URL"]).delete(HEARTBEAT_KEY)
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "order_engine.ops.cli", "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                return r.status == 200

        wait_until(ready, 60, "/readyz to answer 200")
        # Where this folder's commands find the stack's ports (.state/run.json).
        recorded = json.loads((tmp_path / "run.json").read_text())
        assert recorded["api"] == f"http://127.0.0.1:{port}"
        assert "localnet" not in recorded  # SOLANA_RPC_URL names the session's: none started
        assert recorded["pid"] == run.pid

        # The scheduler's reconciler is consumed by the worker (its heartbeat is fresh); until
        # then the check says `starting` (its start-up grace), not healthy.
        def worker_consumes() -> bool:
            check = [sys.executable, "-m", "order_engine.ops.cli", "check-worker"]
            done = subprocess.run(check, env=env, capture_output=True, text=True)
            return done.returncode == 0 and done.stdout.startswith("healthy:")

        wait_until(worker_consumes, 60, "the worker to run the reconciler", every_s=0.5)
        family = psutil.Process(run.pid).children(recursive=True)
        labels = " ".join(" ".join(p.cmdline()) for p in family)
        assert "gunicorn" in labels
        assert "worker" in labels
        assert "beat" in labels

        # A second run in the same folder is refused before it starts anything, naming the first.
        second = subprocess.run(
            [sys.executable, "-m", "order_engine.ops.cli", "run"],
            env={**env, "PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1, second.stderr
        assert f"pid {run.pid}, API on port {port}" in second.stderr
        assert psutil.Process(run.pid).children(recursive=True) == family

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=40) == 0
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert alive == []
        assert not (tmp_path / "run.json").exists()
    finally:
        if run.poll() is None:
            # SIGKILL skips the supervisor's cleanup, so reap its children (own sessions) too.
            for child in psutil.Process(run.pid).children(recursive=True):
                child.kill()
            run.kill()
        log.close()
