"""The engine's client of the block engine: protected sending and what bundles pay.

Jito's block engine JSON-RPC (https://docs.jito.wtf/lowlatencytxnsend/), which the localnet
serves on the same paths: POST `/api/v1/transactions` `sendTransaction` (a bundle of one:
never in the public queue, so never sandwiched, and never charged when it fails), POST
`/api/v1/bundles` `getTipAccounts` and `getInflightBundleStatuses` (at most 5 ids a call), GET
`/api/v1/bundles/tip_floor` (landed tips' percentiles, in SOL).

Cheap by construction: the tip accounts are read once per process (and hourly after), the tip
floor at most once per slot per process (one caller reads, the others wait for its answer),
and the in-flight statuses only by the process's status poller, once per slot for all.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from order_engine.chain.statuses import RpcError
from order_engine.domain.errors import BlockhashExpired, ExecutionError, RpcUnavailable

if TYPE_CHECKING:
    from order_engine.chain.client import RpcChain

BUNDLES_PATH = "/api/v1/bundles"
TRANSACTIONS_PATH = "/api/v1/transactions"
TIP_FLOOR_PATH = "/api/v1/bundles/tip_floor"
MAX_BUNDLE_IDS = 5  # getInflightBundleStatuses / getBundleStatuses take at most 5 ids
MIN_TIP_LAMPORTS = 1_000  # the least tip the block engine considers a bundle with
LAMPORTS_PER_SOL = 1_000_000_000
TIP_ACCOUNTS_TTL_S = 3600.0
TIP_PERCENTILES = ("25", "50", "75", "95", "99")
INVALID_PARAMS = -32602  # how the block engine refuses a bundle (JSON-RPC 2.0's code)


class ProtectedSendRefused(ExecutionError):
    """The block engine refused the transaction itself (no tip, malformed): never retried."""

    code, retryable = "BUNDLE_REFUSED", False


class BlockEngine:
    """The block engine at `url` (an origin: the paths are Jito's), over `chain`'s transport."""

    def __init__(self, chain: RpcChain, url: str) -> None:
        self.url = url.rstrip("/")
        self._chain = chain
        self._lock = threading.Lock()
        self._tip_accounts: tuple[float, list[str]] | None = None
        self._tip_floor: tuple[int, dict[str, int]] | None = None

    def _call(self, path: str, method: str, params: list[Any]) -> Any:
        return self._chain.call_at(self.url + path, method, params)

    def send_transaction(self, encoded: str) -> str:
        """Send a signed, base64 transaction carrying its tip as a bundle of one; its signature.
        Sending the same bytes again is harmless: the same bundle id, landed or failed once."""
        try:
            return str(
                self._call(TRANSACTIONS_PATH, "sendTransaction", [encoded, {"encoding": "base64"}])
            )
        except RpcError as exc:
            if "blockhash not found" in exc.message.lower():
                raise BlockhashExpired("the block engine no longer knows the blockhash") from None
            if exc.code == INVALID_PARAMS:  # no tip, a transaction that does not decode
                raise ProtectedSendRefused(f"the block engine refused it: {exc.message}") from None
            # Unhealthy, rate-limited, …: asked again (the same bytes: they land at most once).
            raise RpcUnavailable(f"block engine: RPC error {exc.code}: {exc.message}") from None

    def tip_accounts(self) -> list[str]:
        """The 8 tip accounts (`getTipAccounts`), read once per process and hourly after."""
        cached = self._tip_accounts
        if cached is not None and time.monotonic() - cached[0] < TIP_ACCOUNTS_TTL_S:
            return cached[1]
        with self._lock:
            cached = self._tip_accounts
            if cached is None or time.monotonic() - cached[0] >= TIP_ACCOUNTS_TTL_S:
                accounts = self._chain.read_at(self.url + BUNDLES_PATH, "getTipAccounts", [])
                if not isinstance(accounts, list) or not accounts:
                    raise RpcUnavailable("the block engine named no tip accounts")
                cached = (time.monotonic(), [str(a) for a in accounts])
                self._tip_accounts = cached
            return cached[1]

    def tip_floor(self, slot: int) -> dict[str, int]:
        """Landed tips' percentiles ("25", "50", "75", "95", "99") in lamports, rounded up:
        read at most once per `slot` per process, whoever asks."""
        cached = self._tip_floor
        if cached is not None and cached[0] >= slot:
            return cached[1]
        with self._lock:
            cached = self._tip_floor
            if cached is None or cached[0] < slot:
                cached = (slot, _tip_floor_lamports(self._chain.get_at(self.url + TIP_FLOOR_PATH)))
                self._tip_floor = cached
            return cached[1]

    def inflight_statuses(self, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """{bundle id: (Invalid | Pending | Failed | Landed, the slot asked at)}: one HTTP
        request for all, a JSON-RPC batch of calls of at most 5 ids each."""
        chunks = [list(ids[i : i + MAX_BUNDLE_IDS]) for i in range(0, len(ids), MAX_BUNDLE_IDS)]
        batch = [
            {"jsonrpc": "2.0", "id": n, "method": "getInflightBundleStatuses", "params": [chunk]}
            for n, chunk in enumerate(chunks)
        ]
        replies = self._chain.post_at(self.url + BUNDLES_PATH, batch, "getInflightBundleStatuses")
        found: dict[str, tuple[str, int]] = {}
        for reply in replies if isinstance(replies, list) else []:
            result = reply.get("result") if isinstance(reply, dict) else None
            if not isinstance(result, dict):
                continue
            slot = int((result.get("context") or {}).get("slot") or 0)
            for entry in result.get("value") or []:
                if isinstance(entry, dict) and isinstance(entry.get("bundle_id"), str):
                    found[entry["bundle_id"]] = (str(entry.get("status")), slot)
        return found


def _tip_floor_lamports(body: Any) -> dict[str, int]:
    """The tip floor's first entry's `landed_tips_<p>th_percentile` in lamports (SOL amounts
    read as exact decimals, never floats), each at least the minimum tip."""
    entries = json.loads(body, parse_float=Decimal) if isinstance(body, bytes | str) else body
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise RpcUnavailable("the block engine's tip floor is malformed")
    floor = {}
    for percentile in TIP_PERCENTILES:
        sol = entries[0].get(f"landed_tips_{percentile}th_percentile")
        lamports = math.ceil(Decimal(str(sol)) * LAMPORTS_PER_SOL) if sol is not None else 0
        floor[percentile] = max(lamports, MIN_TIP_LAMPORTS)
    return floor
