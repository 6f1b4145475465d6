"""The real localnet process (`python -m order_engine.localnet serve`) on a state directory of
its own, for the tests that drive it over HTTP, with its admin CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.watchers import wait_until
from tests.unit.localnet.support import over_http


class Process:
    def __init__(self, state_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "LOCALNET_PORT": str(port),
            "LOCALNET_STATE_DIR": str(state_dir),
            "DEX_SWAP_LATENCY_MS": "300-400",
            "DEX_EXPIRY_RATE": "0",
            "DEX_TRANSIENT_FAILURE_RATE": "0",
            **(env or {}),
        }
        self.log = (state_dir / f"localnet-{port}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "order_engine.localnet", "serve"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.call = over_http(self.url)
        wait_until(lambda: self.call("getHealth") == "ok", 20, "the localnet to answer")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "order_engine.localnet", *args, "--url", self.url],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
