"""The localnet's JSON-RPC 2.0 node: Solana's method names, parameters, result shapes and error
codes (research/solana-rpc.md §1–§3, §9) over the in-memory `Cluster`, plus admin methods.

`Localnet` is usable without HTTP: `Localnet.in_memory(settings, VirtualClock(t))` and
`handle({"jsonrpc": "2.0", "id": 1, "method": "getSlot"})` return the response object; the HTTP
server calls `handle_body(bytes)`, which returns the response text ready to send.

Speed: every served account caches its encoded `UiAccount` JSON fragment per encoding until the
account changes (a pool's accounts are re-encoded once per change of the pool, never per
request), and responses carrying accounts are assembled from those fragments as text instead of
re-serialising 10 KB bin arrays with `json.dumps` on every call.

Simplifications, all documented for the engine's authors: there is one bank, so every
commitment level sees the current slot (`minContextSlot` is still honoured); `jsonParsed` falls
back to base64, as a real node does for accounts it cannot parse; `searchTransactionHistory` is
accepted and every landed signature is always found (the ledger is never pruned).

Admin methods (prefix `localnet_`, params as one object): `localnet_move`, `localnet_launch`,
`localnet_drain`, `localnet_congest`, `localnet_planFaults`, `localnet_ledger`,
`localnet_status`. They are part of this node only; the engine's public API never exposes them.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import base58

from order_engine.localnet.clock import WallClock
from order_engine.localnet.cluster import Cluster
from order_engine.localnet.cluster.accounts import Account
from order_engine.localnet.cluster.errors import NodeError, Stalled
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.rpc.admin import _pool_json
from order_engine.localnet.rpc.wire import (
    Raw,
    _check_pubkey,
    _invalid_params,
    _matches,
    _parse_filters,
)
from order_engine.localnet.store import Store

API_VERSION = "2.2.0"
FEATURE_SET = 3_294_202_862
RENT_EPOCH = 18_446_744_073_709_551_615  # u64::MAX: rent-exempt (research §2)
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURE_STATUSES = 256
MAX_BASE58_BYTES = 128
MAX_BASE58_TX_CHARS = 1683
MAX_BASE64_TX_CHARS = 1644
STALL_S = 30
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_BASE58_TOO_LARGE = (
    "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding."
)


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
        self._methods: dict[str, Callable[[Any], Any]] = {
            "getSlot": self._get_slot,
            "getBlockHeight": self._get_slot,
            "getLatestBlockhash": self._get_latest_blockhash,
            "isBlockhashValid": self._is_blockhash_valid,
            "getAccountInfo": self._get_account_info,
            "getMultipleAccounts": self._get_multiple_accounts,
            "getProgramAccounts": self._get_program_accounts,
            "getBalance": self._get_balance,
            "getTokenAccountBalance": self._get_token_account_balance,
            "sendTransaction": self._send_transaction,
            "getSignatureStatuses": self._get_signature_statuses,
            "getTransaction": self._get_transaction,
            "getHealth": lambda params: "ok",
            "getVersion": lambda params: {"solana-core": API_VERSION, "feature-set": FEATURE_SET},
            "getRecentPrioritizationFees": self._get_recent_prioritization_fees,
            "getGenesisHash": lambda params: self.cluster.blockhashes.text(0),
            "localnet_move": self._admin_move,
            "localnet_launch": self._admin_launch,
            "localnet_drain": self._admin_drain,
            "localnet_congest": self._admin_congest,
            "localnet_planFaults": self._admin_plan_faults,
            "localnet_ledger": self._admin_ledger,
            "localnet_status": self._admin_status,
        }

    @classmethod
    def in_memory(cls, settings: LocalnetSettings | None = None, clock: Any = None) -> Localnet:
        """A node with no state directory (SQLite in memory): for tests and replays."""
        return cls(settings or LocalnetSettings(), clock, persist=False)

    def close(self) -> None:
        self.cluster.flush()
        self.store.close()

    # -- entry points ----------------------------------------------------------------------

    def handle(self, request: Any) -> Any:
        """One JSON-RPC request object (or a batch list) in, the response object(s) out."""
        if isinstance(request, list):
            if not request:
                return _error_obj(None, NodeError(-32600, "Invalid request"))
            return [r for r in (self._handle_one(item)[0] for item in request) if r is not None]
        return self._handle_one(request)[0]

    def handle_body(self, body: bytes) -> Reply:
        """An HTTP request body in, the reply (status, JSON text) out."""
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
                part, item_status, item_stall = self._respond_text(item)
                if part is not None:
                    parts.append(part)
                status = max(status, item_status)
                stall = stall or item_stall
            body_text = "[" + ",".join(parts) + "]"
        else:
            single, status, stall = self._respond_text(request)
            body_text = single or ""
        return Reply(status, body_text.encode(), delay_ms, STALL_S if stall else 0)

    def _respond_text(self, request: Any) -> tuple[str | None, int, bool]:
        response, raw, status, stall = self._dispatch(request)
        if response is None:
            return None, status, stall
        if raw is not None:
            text = '{"jsonrpc":"2.0","result":' + raw.text + ',"id":' + _DUMPS(response["id"]) + "}"
            return text, status, stall
        return _DUMPS(response), status, stall

    def _handle_one(self, request: Any) -> tuple[Any, int]:
        response, raw, status, _ = self._dispatch(request)
        if response is not None and raw is not None:
            response["result"] = json.loads(raw.text)
        return response, status

    def _dispatch(self, request: Any) -> tuple[dict[str, Any] | None, Raw | None, int, bool]:
        """(response without a Raw result, the Raw result or None, HTTP status, stalled?)."""
        if not isinstance(request, dict):
            return _error_obj(None, NodeError(-32600, "Invalid request")), None, 200, False
        request_id = request.get("id")
        method = request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _error_obj(request_id, NodeError(-32600, "Invalid request")), None, 200, False
        handler = self._methods.get(method)
        if handler is None:
            return _error_obj(request_id, NodeError(-32601, "Method not found")), None, 200, False
        params = request.get("params", [])
        if params is None:
            params = []
        try:
            if not isinstance(params, list | dict):
                raise _invalid_params("Invalid params: expected an array")
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

    # -- helpers ---------------------------------------------------------------------------

    def _context_slot(self, config: dict[str, Any] | None) -> int:
        """Advance the cluster, then the context slot; honours `minContextSlot` (-32016)."""
        self.cluster.advance()
        slot = self.cluster.current_slot()
        if config:
            minimum = config.get("minContextSlot")
            if minimum is not None and int(minimum) > slot:
                raise NodeError(
                    -32016, "Minimum context slot has not been reached", {"contextSlot": slot}
                )
        return slot

    @staticmethod
    def _context(slot: int) -> dict[str, Any]:
        return {"slot": slot, "apiVersion": API_VERSION}

    @staticmethod
    def _context_text(slot: int) -> str:
        return '{"slot":' + str(slot) + ',"apiVersion":"' + API_VERSION + '"}'

    @staticmethod
    def _config(params: list[Any], index: int) -> dict[str, Any]:
        if len(params) > index and params[index] is not None:
            config = params[index]
            if not isinstance(config, dict):
                raise _invalid_params("Invalid params: config must be an object")
            return config
        return {}

    @staticmethod
    def _positional(params: Any, index: int, what: str) -> Any:
        if not isinstance(params, list) or len(params) <= index:
            raise _invalid_params(f"Invalid params: missing {what}")
        return params[index]

    def _encode(self, account: Account, config: dict[str, Any], default: str) -> str:
        """The UiAccount JSON text for `account` in the requested encoding (cached)."""
        encoding = config.get("encoding") or default
        data_slice = config.get("dataSlice")
        if data_slice is None:
            cached = account.cache.get(encoding)
            if cached is not None:
                return cached
            data = account.data
        else:
            try:
                offset, length = int(data_slice["offset"]), int(data_slice["length"])
            except (KeyError, TypeError, ValueError):
                raise _invalid_params("Invalid params: dataSlice needs offset and length") from None
            data = account.data[offset : offset + length]
        if encoding in ("base64", "jsonParsed"):
            payload = '["' + base64.b64encode(data).decode() + '","base64"]'
        elif encoding in ("base58", "binary"):
            if len(data) > MAX_BASE58_BYTES:
                raise NodeError(-32600, _BASE58_TOO_LARGE)
            text = base58.b58encode(data).decode()
            payload = '"' + text + '"' if encoding == "binary" else '["' + text + '","base58"]'
        else:
            raise _invalid_params(f"Invalid params: unsupported encoding {encoding}")
        fragment = (
            '{"data":'
            + payload
            + ',"executable":'
            + ("true" if account.executable else "false")
            + ',"lamports":'
            + str(account.lamports)
            + ',"owner":"'
            + account.owner
            + '","rentEpoch":'
            + str(RENT_EPOCH)
            + ',"space":'
            + str(len(account.data))
            + "}"
        )
        if data_slice is None:
            account.cache[encoding] = fragment
        return fragment

    def _lookup(self, address: Any) -> Account | None:
        if not isinstance(address, str):
            raise _invalid_params("Invalid params: expected a base58 pubkey string")
        account = self.cluster.accounts.get(address)
        if account is None:
            _check_pubkey(address)
        return account

    # -- cluster methods ---------------------------------------------------------------------

    def _get_slot(self, params: list[Any]) -> int:
        return self._context_slot(self._config(params, 0))

    def _get_latest_blockhash(self, params: list[Any]) -> dict[str, Any]:
        self._context_slot(self._config(params, 0))
        blockhash, last_valid, slot = self.cluster.blockhashes.latest(self.cluster.current_slot())
        return {
            "context": self._context(slot),
            "value": {"blockhash": blockhash, "lastValidBlockHeight": last_valid},
        }

    def _is_blockhash_valid(self, params: list[Any]) -> dict[str, Any]:
        text = self._positional(params, 0, "blockhash")
        slot = self._context_slot(self._config(params, 1))
        try:
            digest = base58.b58decode(text)
        except ValueError:
            raise _invalid_params("Invalid params: invalid blockhash") from None
        if len(digest) != 32:
            raise _invalid_params("Invalid params: invalid blockhash")
        valid = self.cluster.blockhashes.slot_of(digest, self.cluster.current_slot()) is not None
        return {"context": self._context(slot), "value": valid}

    def _get_account_info(self, params: list[Any]) -> Raw:
        address = self._positional(params, 0, "pubkey")
        config = self._config(params, 1)
        slot = self._context_slot(config)
        account = self._lookup(address)
        # getAccountInfo's default encoding is the legacy `binary` [AGV-RPC get_account_info].
        value = "null" if account is None else self._encode(account, config, "binary")
        return Raw('{"context":' + self._context_text(slot) + ',"value":' + value + "}")

    def _get_multiple_accounts(self, params: list[Any]) -> Raw:
        addresses = self._positional(params, 0, "pubkeys")
        if not isinstance(addresses, list):
            raise _invalid_params("Invalid params: pubkeys must be an array")
        if len(addresses) > MAX_MULTIPLE_ACCOUNTS:
            raise _invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        config = self._config(params, 1)
        slot = self._context_slot(config)
        values = []
        for address in addresses:
            account = self._lookup(address)
            # getMultipleAccounts defaults to base64 [AGV-RPC get_multiple_accounts].
            values.append("null" if account is None else self._encode(account, config, "base64"))
        return Raw(
            '{"context":' + self._context_text(slot) + ',"value":[' + ",".join(values) + "]}"
        )

    def _get_program_accounts(self, params: list[Any]) -> Raw:
        program = self._positional(params, 0, "program id")
        if not isinstance(program, str):
            raise _invalid_params("Invalid params: expected a base58 pubkey string")
        _check_pubkey(program)
        config = self._config(params, 1)
        slot = self._context_slot(config)
        filters = _parse_filters(config.get("filters") or [])
        entries = []
        for address, account in self.cluster.accounts.of_program(program):
            if all(_matches(f, account.data) for f in filters):
                entries.append(
                    '{"account":'
                    + self._encode(account, config, "binary")
                    + ',"pubkey":"'
                    + address
                    + '"}'
                )
        listing = "[" + ",".join(entries) + "]"
        if config.get("withContext"):
            return Raw('{"context":' + self._context_text(slot) + ',"value":' + listing + "}")
        return Raw(listing)

    def _get_balance(self, params: list[Any]) -> dict[str, Any]:
        address = self._positional(params, 0, "pubkey")
        slot = self._context_slot(self._config(params, 1))
        account = self._lookup(address)
        return {"context": self._context(slot), "value": 0 if account is None else account.lamports}

    def _get_token_account_balance(self, params: list[Any]) -> dict[str, Any]:
        address = self._positional(params, 0, "pubkey")
        slot = self._context_slot(self._config(params, 1))
        token = self.cluster.bank.token_account(address) if isinstance(address, str) else None
        if token is None:
            raise _invalid_params("Invalid param: could not find account")
        decimals = next(
            (t.decimals for t in self.cluster.bank.tokens.values() if t.mint == token.mint), 0
        )
        ui = Decimal(token.amount).scaleb(-decimals)
        return {
            "context": self._context(slot),
            "value": {
                "amount": str(token.amount),
                "decimals": decimals,
                "uiAmount": None,
                "uiAmountString": format(ui, "f"),
            },
        }

    def _send_transaction(self, params: list[Any]) -> str:
        encoded = self._positional(params, 0, "transaction")
        config = self._config(params, 1)
        if not isinstance(encoded, str):
            raise _invalid_params("Invalid params: transaction must be a string")
        encoding = config.get("encoding") or "base58"  # the server's default [AGV-RPC]
        if encoding == "base64":
            if len(encoded) > MAX_BASE64_TX_CHARS:
                raise _invalid_params(
                    f"base64 encoded solana_transaction::versioned::VersionedTransaction too "
                    f"large: {len(encoded)} bytes (max: encoded/raw {MAX_BASE64_TX_CHARS}/1232)"
                )
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _invalid_params(f"invalid base64 encoding: {exc}") from None
        elif encoding == "base58":
            if len(encoded) > MAX_BASE58_TX_CHARS:
                raise _invalid_params(
                    f"base58 encoded solana_transaction::versioned::VersionedTransaction too "
                    f"large: {len(encoded)} bytes (max: encoded/raw {MAX_BASE58_TX_CHARS}/1232)"
                )
            try:
                raw = base58.b58decode(encoded)
            except ValueError as exc:
                raise _invalid_params(f"invalid base58 encoding: {exc}") from None
        else:
            raise _invalid_params(
                f"unsupported encoding: {encoding}. Supported encodings: base58, base64"
            )
        return self.cluster.send(raw, bool(config.get("skipPreflight", False)))

    def _get_signature_statuses(self, params: list[Any]) -> dict[str, Any]:
        signatures = self._positional(params, 0, "signatures")
        if not isinstance(signatures, list):
            raise _invalid_params("Invalid params: signatures must be an array")
        if len(signatures) > MAX_SIGNATURE_STATUSES:
            raise _invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        slot = self._context_slot(None)
        status = self.cluster.ledger.status
        return {"context": self._context(slot), "value": [status(s, slot) for s in signatures]}

    def _get_transaction(self, params: list[Any]) -> dict[str, Any] | None:
        """A landed transaction with its meta (fee, err, balances before and after), in the
        `json` encoding's shape; null until it has landed (research/solana-rpc.md §2)."""
        signature = self._positional(params, 0, "signature")
        self.cluster.advance()
        entry = self.cluster.ledger.get(str(signature))
        if entry is None or entry.balances is None:
            return None
        balances = entry.balances
        return {
            "slot": entry.slot,
            "blockTime": entry.landed_ms // 1000,
            "version": 0,
            "transaction": {
                "signatures": [entry.signature],
                "message": {"accountKeys": balances["keys"]},
            },
            "meta": {
                "err": entry.err,
                "status": {"Ok": None} if entry.err is None else {"Err": entry.err},
                "fee": entry.fee,
                "preBalances": balances["pre"]["lamports"],
                "postBalances": balances["post"]["lamports"],
                "preTokenBalances": balances["pre"]["tokens"],
                "postTokenBalances": balances["post"]["tokens"],
                "logMessages": [],
                "loadedAddresses": {"writable": [], "readonly": []},
            },
        }

    def _get_recent_prioritization_fees(self, params: list[Any]) -> list[dict[str, int]]:
        addresses = params[0] if isinstance(params, list) and params else []
        if isinstance(addresses, list) and len(addresses) > 128:
            raise _invalid_params("Too many inputs provided; max 128")
        slot = self._context_slot(None)
        return [{"slot": s, "prioritizationFee": 0} for s in range(max(slot - 149, 0), slot + 1)]

    # -- admin methods ---------------------------------------------------------------------

    @staticmethod
    def _object(params: Any) -> dict[str, Any]:
        if isinstance(params, list):
            params = params[0] if params else {}
        if not isinstance(params, dict):
            raise _invalid_params("Invalid params: expected an object")
        return params

    def _admin(self, action: Any) -> Any:
        try:
            return action()
        except (KeyError, ValueError, InvalidOperation) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise _invalid_params(str(message)) from None

    def _admin_move(self, params: Any) -> dict[str, Any]:
        args = self._object(params)

        def run() -> dict[str, Any]:
            pair = str(args["pair"])
            base, sep, quote = pair.partition("/")
            if not sep:
                raise ValueError("pair must look like SOL/USDC")
            moved = self.cluster.admin.move(base, quote, Decimal(str(args["price"])))
            pools = [_pool_json(r) for r in moved]
            return {"pair": pair, "price": str(args["price"]), "pools": pools}

        return self._admin(run)

    def _admin_launch(self, params: Any) -> dict[str, Any]:
        args = self._object(params)

        def run() -> dict[str, Any]:
            record = self.cluster.admin.launch(
                mint=str(args["mint"]),
                symbol=str(args["symbol"]),
                decimals=int(args.get("decimals", 6)),
                quote=str(args.get("quote", "SOL")),
                liquidity=Decimal(str(args["liquidity"])),
                price=Decimal(str(args["price"])),
                venue=str(args.get("venue", "raydium")),
            )
            return _pool_json(record)

        return self._admin(run)

    def _admin_drain(self, params: Any) -> dict[str, Any]:
        args = self._object(params)
        return self._admin(lambda: _pool_json(self.cluster.admin.drain(str(args["pool"]))))

    def _admin_congest(self, params: Any) -> dict[str, Any]:
        args = self._object(params)

        def run() -> dict[str, Any]:
            rate = Decimal(str(args["expiryRate"]))
            if not Decimal(0) <= rate <= Decimal(1):
                raise ValueError("expiryRate must be between 0 and 1")
            seconds = int(args["seconds"])
            if seconds <= 0:
                raise ValueError("seconds must be positive")
            start, end = self.cluster.admin.congest(rate, seconds)
            return {"expiryRate": str(rate), "fromMs": start, "untilMs": end}

        return self._admin(run)

    def _admin_plan_faults(self, params: Any) -> dict[str, Any]:
        args = self._object(params)

        def run() -> dict[str, Any]:
            faults = args["faults"]
            if not isinstance(faults, list):
                raise ValueError("faults must be a list")
            planned = self.cluster.faults.plan(str(args["memo"]), [str(f) for f in faults])
            return {"memo": args["memo"], "planned": planned}

        return self._admin(run)

    def _admin_ledger(self, params: Any) -> list[dict[str, Any]]:
        args = self._object(params)
        self.cluster.advance()
        entries = self.cluster.ledger.query(args.get("memo"), args.get("signature"))
        return [e.to_json() for e in entries]

    def _admin_status(self, params: Any) -> dict[str, Any]:
        self.cluster.advance()
        cluster = self.cluster
        return {
            "slot": cluster.current_slot(),
            "pending": sum(1 for p in cluster.landing.pending.values() if p.fault is None),
            "landed": len(cluster.ledger),
            "pools": [_pool_json(r) for r in cluster.bank.records.values()],
        }


def _error_obj(request_id: Any, error: NodeError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "error": body, "id": request_id}
