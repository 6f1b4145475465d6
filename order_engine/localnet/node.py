"""The localnet's JSON-RPC 2.0 node: requests in, responses out, over the in-memory `Cluster`.

The node is the RPC layer and the cluster the bank beneath it: this module parses the envelope
(single or batch, notifications), dispatches to the methods of the route it came in on (`rpc`:
`rpc.methods` for Solana's, `rpc.admin` for the `localnet_*` ones; `bundles` and
`transactions`: the block engine's, `rpc.block_engine`) and writes the response, with Solana's
error codes (-32700 parse, -32600 invalid request, -32601 unknown method, a method's own
`NodeError`).

`Localnet` is usable without HTTP: `Localnet.in_memory(settings, VirtualClock(t))` and
`handle({"jsonrpc": "2.0", "id": 1, "method": "getSlot"})` return the response object; the HTTP
server calls `handle_body(bytes)`, which returns the response text ready to send, with the
seeded RPC latency to hold it for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from order_engine.localnet.clock import WallClock
from order_engine.localnet.cluster import Cluster
from order_engine.localnet.cluster.errors import NodeError, Stalled
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.rpc.admin import AdminMethods
from order_engine.localnet.rpc.block_engine import BlockEngineMethods, tip_floor_text
from order_engine.localnet.rpc.methods import SolanaMethods
from order_engine.localnet.rpc.wire import Raw, invalid_params
from order_engine.localnet.store import Store

STALL_S = 30
RPC, BUNDLES, TRANSACTIONS = "rpc", "bundles", "transactions"  # the routes' method tables
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
Methods = dict[str, Callable[[Any], Any]]


@dataclass
class Reply:
    """What the HTTP layer sends: status, body, and how long to hold it first."""

    status: int
    body: bytes
    delay_ms: int = 0
    stall_s: float = 0


class Localnet:
    """The node: a `Cluster` plus the JSON-RPC methods. Single-threaded (greenlets are fine)."""

    def __init__(
        self,
        settings: LocalnetSettings | None = None,
        clock: Any = None,
        state_dir: Path | None = None,
        *,
        persist: bool = True,
    ) -> None:
        self.settings = settings or LocalnetSettings.from_env()
        self.clock = clock or WallClock()
        directory = (state_dir or self.settings.state_dir) if persist else None
        self.store = Store(directory)
        self.cluster = Cluster(self.settings, self.clock, self.store)
        self._latency_rng = random.Random(f"{self.settings.seed}:rpc-latency")
        block_engine = BlockEngineMethods(self.cluster)
        self._routes: dict[str, dict[str, Callable[[Any], Any]]] = {
            RPC: {**SolanaMethods(self.cluster).table(), **AdminMethods(self.cluster).table()},
            BUNDLES: block_engine.bundles_table(),
            TRANSACTIONS: block_engine.transactions_table(),
        }

    @classmethod
    def in_memory(cls, settings: LocalnetSettings | None = None, clock: Any = None) -> Localnet:
        """A node with no state directory (SQLite in memory): for tests and replays."""
        return cls(settings or LocalnetSettings(), clock, persist=False)

    def close(self) -> None:
        self.cluster.flush()
        self.store.close()

    # -- entry points ----------------------------------------------------------------------

    def handle(self, request: Any, route: str = RPC) -> Any:
        """One JSON-RPC request object (or a batch list) in, the response object(s) out."""
        methods = self._routes[route]
        if isinstance(request, list):
            if not request:
                return _error_obj(None, NodeError(-32600, "Invalid request"))
            answers = (self._handle_one(item, methods)[0] for item in request)
            return [r for r in answers if r is not None]
        return self._handle_one(request, methods)[0]

    def tip_floor(self) -> bytes:
        """The block engine's tip floor (GET /api/v1/bundles/tip_floor), as JSON text."""
        return tip_floor_text(self.cluster).encode()

    def handle_body(self, body: bytes, route: str = RPC) -> Reply:
        """An HTTP request body in, the reply (status, JSON text) out."""
        methods = self._routes[route]
        delay_ms = self.settings.rpc_latency.sample_ms(self._latency_rng)
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            error = _error_obj(None, NodeError(-32700, "Parse error"))
            return Reply(200, _DUMPS(error).encode(), delay_ms)
        if isinstance(request, list):
            if not request:
                text = _DUMPS(_error_obj(None, NodeError(-32600, "Invalid request")))
                return Reply(200, text.encode(), delay_ms)
            parts: list[str] = []
            status, stall = 200, False
            for item in request:
                part, item_status, item_stall = self._respond_text(item, methods)
                if part is not None:
                    parts.append(part)
                status = max(status, item_status)
                stall = stall or item_stall
            body_text = "[" + ",".join(parts) + "]"
        else:
            single, status, stall = self._respond_text(request, methods)
            body_text = single or ""
        return Reply(status, body_text.encode(), delay_ms, STALL_S if stall else 0)

    def _respond_text(self, request: Any, methods: Methods) -> tuple[str | None, int, bool]:
        response, raw, status, stall = self._dispatch(request, methods)
        if response is None:
            return None, status, stall
        if raw is not None:
            text = '{"jsonrpc":"2.0","result":' + raw.text + ',"id":' + _DUMPS(response["id"]) + "}"
            return text, status, stall
        return _DUMPS(response), status, stall

    def _handle_one(self, request: Any, methods: Methods) -> tuple[Any, int]:
        response, raw, status, _ = self._dispatch(request, methods)
        if response is not None and raw is not None:
            response["result"] = json.loads(raw.text)
        return response, status

    def _dispatch(
        self, request: Any, methods: Methods
    ) -> tuple[dict[str, Any] | None, Raw | None, int, bool]:
        """(response without a Raw result, the Raw result or None, HTTP status, stalled?)."""
        if not isinstance(request, dict):
            return _error_obj(None, NodeError(-32600, "Invalid request")), None, 200, False
        request_id = request.get("id")
        method = request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _error_obj(request_id, NodeError(-32600, "Invalid request")), None, 200, False
        handler = methods.get(method)
        if handler is None:
            return _error_obj(request_id, NodeError(-32601, "Method not found")), None, 200, False
        params = request.get("params", [])
        if params is None:
            params = []
        try:
            if not isinstance(params, list | dict):
                raise invalid_params("Invalid params: expected an array")
            result = handler(params)
        except Stalled as exc:
            return _error_obj(request_id, exc), None, exc.http_status, True
        except NodeError as exc:
            return _error_obj(request_id, exc), None, exc.http_status, False
        if "id" not in request:
            return None, None, 200, False  # a notification: no response
        if isinstance(result, Raw):
            return {"jsonrpc": "2.0", "id": request_id}, result, 200, False
        return {"jsonrpc": "2.0", "result": result, "id": request_id}, None, 200, False


def _error_obj(request_id: Any, error: NodeError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "error": body, "id": request_id}
