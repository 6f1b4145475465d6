"""Small helpers for tests that drive real processes: waiting on conditions, free ports."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # noqa: BLE001 - a not-yet-ready server raises; keep polling
            last_error = exc
        else:
            if result:
                return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last_error!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rpc(url: str, method: str, params: list | None = None, timeout_s: float = 10) -> object:
    """One JSON-RPC call to a Solana-style node (the localnet); raises on an error object."""
    import json
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    req = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as response:
        reply = json.load(response)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def plant_faults(rpc_url: str, memo: str, *faults: str) -> None:
    """Faults for the localnet to inject, one per `sendTransaction` whose memo is `memo` (an
    order's clientOrderId): rpc_unavailable, lost_response, drop, price_jump, stall."""
    rpc(rpc_url, "localnet_planFaults", [{"memo": memo, "faults": list(faults)}])
