"""The engine's one door to the chain: the `Chain` protocol and its JSON-RPC implementation.

The engine talks to the localnet exactly as it would to a mainnet RPC node (docs/localnet.md):
Solana JSON-RPC 2.0 over HTTP, base64 account data, base64 transactions, Solana's error codes.
A real deployment points `SOLANA_RPC_URL` at another node and no code changes.

Cheap by construction, because every order of a process shares the same chain state:
- `latest_blockhash()` asks the node once per slot per process;
- `wait_for_status()` registers the signature with one poller per process
  (`status_poller.py`), which asks `getSignatureStatuses` for every in-flight signature of the
  process once per slot (at most 256 per call) instead of one poll loop per order, what the
  landed ones moved in `getTransaction` batches (at most 100 a request), and the block engine
  for the bundles of the protected ones not seen yet;
- the block engine (`block_engine.py`) is reached on the same connections; the priority fee
  oracle (`fees.py`) reads `recent_prioritization_fees` once per slot per account set;
- account reads are batched into `getMultipleAccounts` (at most 100 keys per call) by the pool
  index (`chain/pools.py`), once per slot per pair.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3

from order_engine.chain.block_engine import BlockEngine
from order_engine.chain.rebroadcast import LandingDelays
from order_engine.chain.status_poller import StatusPoller
from order_engine.chain.statuses import (
    Blockhash,
    RpcError,
    SignatureStatus,
    TransactionBalances,
)
from order_engine.domain.errors import (
    AmountTooSmall,
    BlockhashExpired,
    ExecutionError,
    NoLiquidity,
    RpcUnavailable,
    SlippageExceeded,
)
from order_engine.infra import metrics

__all__ = [
    "Blockhash",
    "Chain",
    "RpcChain",
    "RpcError",
    "SignatureStatus",
    "Simulation",
    "TransactionBalances",
    "program_error",
]

log = logging.getLogger(__name__)

SLOT_MS = 400
MAX_MULTIPLE_ACCOUNTS = 100  # [AGV-REQ] MAX_MULTIPLE_ACCOUNTS
MAX_SIGNATURE_STATUSES = 256  # [AGV-RPC] MAX_GET_SIGNATURE_STATUSES_QUERY_ITEMS
# A node refuses a request body over 50 KiB with HTTP 413 ([AGV-RPC] MAX_REQUEST_BODY_SIZE;
# docs/localnet.md, "JSON-RPC envelope").
# One getTransaction of a batch is about 190 bytes, so 100 of them (~19 KB) stay well under
# it; a slot in which more land takes one batch per 100.
MAX_TRANSACTIONS_PER_BATCH = 100

# JSON-RPC error codes (docs/localnet.md, "Errors"; [AGV-ERR]).
PREFLIGHT_FAILURE = -32002
SIGNATURE_VERIFICATION_FAILURE = -32003
NODE_UNHEALTHY = -32005

# Anchor custom program errors that the engine can name (research §7, §8). Raydium CPMM raises
# 6005 ExceededSlippage, 6006 ZeroTradingTokens, 6012 InsufficientVault; Meteora DLMM 6003
# ExceededAmountSlippageTolerance and 6012 PairInsufficientLiquidity.
_PROGRAM_ERRORS: dict[int, type[ExecutionError]] = {
    6003: SlippageExceeded,
    6005: SlippageExceeded,
    6006: AmountTooSmall,
    6012: NoLiquidity,
}


class TransactionRejected(ExecutionError):
    """The node refused the transaction itself (bad signature, malformed): never retried."""

    code, retryable = "TRANSACTION_REJECTED", False


class TransactionFailed(ExecutionError):
    """The transaction landed but a program refused it for a reason the engine has no name for."""

    code, retryable = "TRANSACTION_FAILED", False


@dataclass(frozen=True)
class Simulation:
    """`simulateTransaction`'s answer: the slot it ran at, its error (None if it succeeded)
    and the compute units it consumed."""

    slot: int
    err: Any
    units_consumed: int


class Chain(Protocol):
    """What the engine needs from a Solana RPC node."""

    landing_delays: LandingDelays  # how late this process's transactions land

    def latest_blockhash(self) -> Blockhash: ...

    def block_height(self) -> int: ...

    def multiple_accounts(self, keys: Sequence[str]) -> tuple[int, list[bytes | None]]: ...

    def program_accounts(self, program: str, data_size: int) -> list[tuple[str, bytes]]: ...

    def send_transaction(self, encoded: str) -> str: ...

    def simulate(self, encoded: str) -> Simulation: ...

    def recent_prioritization_fees(self, accounts: Sequence[str]) -> list[tuple[int, int]]: ...

    @property
    def block_engine(self) -> BlockEngine: ...

    def signature_statuses(self, signatures: Sequence[str]) -> dict[str, SignatureStatus]: ...

    def wait_for_status(
        self, signature: str, timeout_s: float, bundle: bool = False
    ) -> SignatureStatus | None: ...

    def transaction_balances(self, signature: str) -> TransactionBalances | None: ...


class RpcChain:
    """`Chain` over Solana JSON-RPC (HTTP POST, keep-alive, a timeout on every call)."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        slot_ms: int = SLOT_MS,
        block_engine_url: str = "",
    ) -> None:
        self.url = url
        self.slot_ms = slot_ms
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=64,
            block=True,  # never open connections beyond the pool: no churn under bursts
            timeout=urllib3.Timeout(connect=2.0, read=timeout_s),
            retries=False,
            headers={"Content-Type": "application/json"},
        )
        self._ids = iter(range(1, 2**62))
        self._blockhash: tuple[float, Blockhash] | None = None
        self._blockhash_lock = threading.Lock()
        self._poller = StatusPoller(self)
        self.landing_delays = LandingDelays(slot_ms)
        # The block engine: by default the RPC URL's origin (the localnet serves both).
        self._block_engine = BlockEngine(self, block_engine_url or _origin(url))

    @property
    def block_engine(self) -> BlockEngine:
        return self._block_engine

    # -- transport ------------------------------------------------------------------------

    def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; `RpcError` for an error object, `RpcUnavailable` for transport."""
        return self.call_at(self.url, method, params)

    def call_at(self, url: str, method: str, params: list[Any]) -> Any:
        """`call` to another JSON-RPC endpoint (the block engine's) on the same connections."""
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        reply = self.post_at(url, request, method)
        if not isinstance(reply, dict):
            raise RpcUnavailable(f"RPC node sent a malformed answer to {method}")
        error = reply.get("error")
        if error is not None:
            metrics.RPC_ERRORS.labels(method, f"rpc_{error.get('code', 0)}").inc()
            raise RpcError(error.get("code", 0), error.get("message", ""), error.get("data"))
        return reply.get("result")

    def read_at(self, url: str, method: str, params: list[Any]) -> Any:
        """`call_at` for reads: any error object is `RpcUnavailable` (retryable)."""
        try:
            return self.call_at(url, method, params)
        except RpcError as exc:
            raise RpcUnavailable(f"{method}: RPC error {exc.code}: {exc.message}") from None

    def get_at(self, url: str) -> bytes:
        """GET `url` (the block engine's tip floor): the body of a 200, else RpcUnavailable."""
        started = time.perf_counter()
        try:
            response = self._http.request("GET", url)
        except urllib3.exceptions.HTTPError as exc:
            raise RpcUnavailable(f"{url} unreachable: {exc}") from None
        finally:
            metrics.RPC_SECONDS.labels("GET").observe(time.perf_counter() - started)
        if response.status != 200:
            raise RpcUnavailable(f"{url} answered HTTP {response.status}")
        return bytes(response.data)

    def _post(self, request: Any, what: str) -> Any:
        return self.post_at(self.url, request, what)

    def post_at(self, url: str, request: Any, what: str) -> Any:
        """POST one JSON-RPC request object or batch to `url`; the decoded answer."""
        body = json.dumps(request, separators=(",", ":")).encode()
        started = time.perf_counter()
        try:
            response = self._http.request("POST", url, body=body)
        except urllib3.exceptions.HTTPError as exc:
            metrics.RPC_ERRORS.labels(what, type(exc).__name__).inc()
            raise RpcUnavailable(f"RPC node unreachable ({what}): {exc}") from None
        finally:
            metrics.RPC_SECONDS.labels(what).observe(time.perf_counter() - started)
        if response.status >= 500:
            metrics.RPC_ERRORS.labels(what, f"http_{response.status}").inc()
            raise RpcUnavailable(f"RPC node answered HTTP {response.status} to {what}")
        try:
            return json.loads(response.data)
        except ValueError:
            if response.status != 200:  # 413 for a body over the node's limit, 429, …
                metrics.RPC_ERRORS.labels(what, f"http_{response.status}").inc()
                raise RpcUnavailable(
                    f"RPC node answered HTTP {response.status} to {what} ({len(body)} bytes)"
                ) from None
            metrics.RPC_ERRORS.labels(what, "malformed").inc()
            raise RpcUnavailable(f"RPC node sent a non-JSON answer to {what}") from None

    def _call(self, method: str, params: list[Any]) -> Any:
        """`call` for reads: any error from the node is `RpcUnavailable` (retryable), so a node
        that is unhealthy, lagging or misconfigured delays orders but never wedges one."""
        try:
            return self.call(method, params)
        except RpcError as exc:
            raise RpcUnavailable(f"{method}: RPC error {exc.code}: {exc.message}") from None

    # -- reads ------------------------------------------------------------------------------

    def latest_blockhash(self) -> Blockhash:
        """The newest blockhash, asked of the node at most once per slot per process."""
        now = time.monotonic()
        cached = self._blockhash
        if cached is not None and now - cached[0] < self.slot_ms / 1000:
            return cached[1]
        with self._blockhash_lock:
            cached = self._blockhash
            if cached is not None and time.monotonic() - cached[0] < self.slot_ms / 1000:
                return cached[1]
            result = self._call("getLatestBlockhash", [{"commitment": "confirmed"}])
            value = result["value"]
            blockhash = Blockhash(
                value["blockhash"], int(value["lastValidBlockHeight"]), result["context"]["slot"]
            )
            self._blockhash = (time.monotonic(), blockhash)
            return blockhash

    def block_height(self) -> int:
        return int(self._call("getBlockHeight", [{"commitment": "confirmed"}]))

    def multiple_accounts(self, keys: Sequence[str]) -> tuple[int, list[bytes | None]]:
        """(the slot they were read at, each account's data or None), in request order."""
        found: list[bytes | None] = []
        slot = 0
        for chunk in _chunks(keys, MAX_MULTIPLE_ACCOUNTS):
            result = self._call(
                "getMultipleAccounts",
                [list(chunk), {"encoding": "base64", "commitment": "confirmed"}],
            )
            slot = max(slot, int(result["context"]["slot"]))
            found.extend(_account_data(account) for account in result["value"])
        return slot, found

    def program_accounts(self, program: str, data_size: int) -> list[tuple[str, bytes]]:
        result = self._call(
            "getProgramAccounts",
            [
                program,
                {
                    "encoding": "base64",
                    "commitment": "confirmed",
                    "filters": [{"dataSize": data_size}],
                },
            ],
        )
        return [(item["pubkey"], _account_data(item["account"]) or b"") for item in result]

    def signature_statuses(self, signatures: Sequence[str]) -> dict[str, SignatureStatus]:
        """Known statuses of `signatures`; a signature the node has never seen is absent."""
        statuses: dict[str, SignatureStatus] = {}
        for chunk in _chunks(signatures, MAX_SIGNATURE_STATUSES):
            result = self._call(
                "getSignatureStatuses", [list(chunk), {"searchTransactionHistory": True}]
            )
            for signature, status in zip(chunk, result["value"], strict=True):
                if status is not None:
                    statuses[signature] = SignatureStatus(
                        signature,
                        int(status["slot"]),
                        status.get("err"),
                        status.get("confirmationStatus"),
                    )
        return statuses

    def recent_prioritization_fees(self, accounts: Sequence[str]) -> list[tuple[int, int]]:
        """`getRecentPrioritizationFees(accounts)`: (slot, µlamports per CU), oldest first."""
        result = self._call("getRecentPrioritizationFees", [list(accounts)])
        return [(int(e["slot"]), int(e["prioritizationFee"])) for e in result or []]

    def simulate(self, encoded: str) -> Simulation:
        """`simulateTransaction` of a base64 transaction on its own blockhash, its signatures
        unchecked (the engine simulates the unsigned draft of what it then signs)."""
        config = {"encoding": "base64", "commitment": "confirmed", "sigVerify": False}
        result = self._call("simulateTransaction", [encoded, config])
        value = result["value"]
        units = int(value.get("unitsConsumed") or 0)
        return Simulation(int(result["context"]["slot"]), value.get("err"), units)

    def transaction_balances(self, signature: str) -> TransactionBalances | None:
        result = self._call("getTransaction", _get_transaction_params(signature))
        return None if result is None else _balances(result)

    def many_transaction_balances(
        self, signatures: Sequence[str]
    ) -> dict[str, TransactionBalances]:
        """`getTransaction` for several signatures in JSON-RPC batches (one HTTP round trip per
        `MAX_TRANSACTIONS_PER_BATCH`); a signature the node cannot give yet is absent."""
        found = {}
        for chunk in _chunks(signatures, MAX_TRANSACTIONS_PER_BATCH):
            batch = [
                {"jsonrpc": "2.0", "id": index, "method": "getTransaction", "params": params}
                for index, params in enumerate(_get_transaction_params(s) for s in chunk)
            ]
            replies = self._post(batch, "getTransaction batch")
            for reply in replies if isinstance(replies, list) else []:
                result = reply.get("result")
                index = reply.get("id")
                if result is not None and isinstance(index, int) and index < len(chunk):
                    found[chunk[index]] = _balances(result)
        return found

    # -- writes -----------------------------------------------------------------------------

    def send_transaction(self, encoded: str) -> str:
        """Hand a signed, base64-encoded transaction to the node; return its signature.

        Re-sending the same bytes is harmless: a node answers with the same signature (or
        `AlreadyProcessed` once it landed, which is reported as success here).
        """
        try:
            return str(
                self.call(
                    "sendTransaction",
                    [
                        encoded,
                        {
                            "encoding": "base64",
                            # Bots skip the node's simulation: the engine quoted the same math,
                            # and the landing decides (a failed swap still lands, with `err`).
                            "skipPreflight": True,
                            "maxRetries": 0,
                        },
                    ],
                )
            )
        except RpcError as exc:
            raise send_error(exc) from None

    def wait_for_status(
        self, signature: str, timeout_s: float, bundle: bool = False
    ) -> SignatureStatus | None:
        """Block until the transaction is confirmed (succeeded or failed), or, `bundle`: sent
        to the block engine, its bundle reported Failed; None on timeout."""
        return self._poller.wait(signature, timeout_s, bundle)


def send_error(exc: RpcError) -> ExecutionError:
    """The engine's error for a refused `sendTransaction` (docs/localnet.md, "Errors")."""
    if exc.code == NODE_UNHEALTHY:
        return RpcUnavailable(f"RPC node unhealthy: {exc.message}")
    if exc.code == PREFLIGHT_FAILURE:
        err = (exc.data or {}).get("err") if isinstance(exc.data, dict) else None
        if err == "BlockhashNotFound":
            return BlockhashExpired("the node no longer knows the transaction's blockhash")
        if err is not None:
            return program_error(err, exc.message)
    if exc.code == SIGNATURE_VERIFICATION_FAILURE:
        return TransactionRejected("the node could not verify the transaction's signature")
    return TransactionRejected(f"the node refused the transaction: {exc.message}")


def program_error(err: Any, message: str = "") -> ExecutionError:
    """The engine's error for a transaction that landed (or simulated) with `err`."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, detail = err["InstructionError"]
        if isinstance(detail, dict) and "Custom" in detail:
            code = int(detail["Custom"])
            error_class = _PROGRAM_ERRORS.get(code)
            text = message or f"instruction {index} failed with custom program error {code:#x}"
            if error_class is not None:
                return error_class(text)
            return TransactionFailed(text)
        return TransactionFailed(message or f"instruction {index} failed: {detail}")
    return TransactionFailed(message or f"transaction failed: {err}")


def _get_transaction_params(signature: str) -> list[Any]:
    config = {"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": "confirmed"}
    return [signature, config]


def _balances(result: dict[str, Any]) -> TransactionBalances:
    meta = result["meta"]
    return TransactionBalances(
        slot=int(result["slot"]),
        err=meta.get("err"),
        fee=int(meta["fee"]),
        account_keys=tuple(result["transaction"]["message"]["accountKeys"]),
        pre_lamports=tuple(int(v) for v in meta["preBalances"]),
        post_lamports=tuple(int(v) for v in meta["postBalances"]),
        pre_tokens=_token_balances(meta.get("preTokenBalances") or []),
        post_tokens=_token_balances(meta.get("postTokenBalances") or []),
        units_consumed=meta.get("computeUnitsConsumed"),
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _account_data(account: dict[str, Any] | None) -> bytes | None:
    if account is None:
        return None
    data = account["data"]
    return base64.b64decode(data[0]) if isinstance(data, list) else base64.b64decode(data)


def _token_balances(entries: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    return {(e["owner"], e["mint"]): int(e["uiTokenAmount"]["amount"]) for e in entries}


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
