"""The JSON-RPC errors the node answers with, raised wherever the refusal is decided.

Named apart from the engine's client-side `order_engine.chain.client.RpcError`, which is what
the engine makes of such an answer.
"""

from __future__ import annotations

from typing import Any


class NodeError(Exception):
    """A JSON-RPC error: `code`, `message`, optional `data`; `http_status` for lost responses."""

    def __init__(self, code: int, message: str, data: Any = None, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status


class Stalled(NodeError):
    """The `stall` fault: the server holds the request unanswered; nothing was accepted."""

    def __init__(self) -> None:
        super().__init__(-32005, "Node is unhealthy", {"numSlotsBehind": None}, 503)
