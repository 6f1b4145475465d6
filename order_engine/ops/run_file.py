"""`.state/run.json`: where this folder's `make run` serves, for the commands run beside it.

`order-engine run` writes it once its settings are read and removes it when it stops: the API's
and the localnet's URLs, its pid and when it started. The client commands (order_engine/client/)
and the localnet's admin commands (order_engine/localnet/cli.py) read it when neither a flag nor
the environment names a URL, so a stack on other ports is the one they talk to; `check-worker`
reads when the stack started, for its start-up grace. A file whose pid is gone (a run killed
outright) is not read. Each reader parses it itself: the client imports nothing of the server and
the localnet nothing of ops.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from order_engine.config import STATE_DIR, Settings
from order_engine.ops.embedded import pid_alive

RUN_FILE = STATE_DIR / "run.json"


def write(settings: Settings, *, own_localnet: bool, path: Path = RUN_FILE) -> None:
    recorded: dict[str, Any] = {
        "pid": os.getpid(),
        "startedAt": time.time(),
        "api": f"http://127.0.0.1:{settings.port}",
    }
    if own_localnet:
        recorded["localnet"] = f"http://127.0.0.1:{settings.localnet_port}"
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(recorded) + "\n")
    staged.replace(path)  # a reader never sees half a file


def remove(path: Path = RUN_FILE) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read(path: Path = RUN_FILE) -> dict[str, Any] | None:
    """The running stack's record, or None (no file, not ours to read, or its run is gone)."""
    try:
        recorded = json.loads(path.read_text())
        alive = pid_alive(int(recorded["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return recorded if alive and isinstance(recorded, dict) else None
