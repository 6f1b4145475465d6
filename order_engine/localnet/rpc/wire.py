"""The JSON-RPC wire of the node's methods: reading params, shaping results.

Speed: every served account caches its encoded `UiAccount` JSON fragment per encoding until the
account changes (a pool's accounts are re-encoded once per change of the pool, never per
request), and responses carrying accounts are assembled from those fragments as text (`Raw`)
instead of re-serialising 10 KB bin arrays with `json.dumps` on every call.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import base58

from order_engine.localnet.cluster.accounts import Account
from order_engine.localnet.cluster.errors import NodeError

API_VERSION = "2.2.0"
RENT_EPOCH = 18_446_744_073_709_551_615  # u64::MAX: a rent-exempt account's epoch
MAX_BASE58_BYTES = 128
MAX_PROGRAM_ACCOUNT_FILTERS = 4
MAX_MEMCMP_BYTES = 128
MAX_BASE58_TX_CHARS = 1683
MAX_BASE64_TX_CHARS = 1644
_BASE58_TOO_LARGE = (
    "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding."
)


class Raw:
    """A result already serialised as JSON text (assembled from cached fragments)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def invalid_params(message: str) -> NodeError:
    return NodeError(-32602, message)


def config_of(params: list[Any], index: int) -> dict[str, Any]:
    """The optional config object at `index` ({} when absent)."""
    if len(params) > index and params[index] is not None:
        found = params[index]
        if not isinstance(found, dict):
            raise invalid_params("Invalid params: config must be an object")
        return found
    return {}


def positional(params: Any, index: int, what: str) -> Any:
    if not isinstance(params, list) or len(params) <= index:
        raise invalid_params(f"Invalid params: missing {what}")
    return params[index]


def as_object(params: Any) -> dict[str, Any]:
    """The admin methods' one params object, given bare or as a one-element array."""
    if isinstance(params, list):
        params = params[0] if params else {}
    if not isinstance(params, dict):
        raise invalid_params("Invalid params: expected an object")
    return params


def context(slot: int) -> dict[str, Any]:
    return {"slot": slot, "apiVersion": API_VERSION}


def context_text(slot: int) -> str:
    return '{"slot":' + str(slot) + ',"apiVersion":"' + API_VERSION + '"}'


def encode_account(account: Account, options: dict[str, Any], default: str) -> str:
    """The UiAccount JSON text for `account` in the requested encoding (cached)."""
    encoding = options.get("encoding") or default
    data_slice = options.get("dataSlice")
    if data_slice is None:
        cached = account.cache.get(encoding)
        if cached is not None:
            return cached
        data = account.data
    else:
        try:
            offset, length = int(data_slice["offset"]), int(data_slice["length"])
        except (KeyError, TypeError, ValueError):
            raise invalid_params("Invalid params: dataSlice needs offset and length") from None
        data = account.data[offset : offset + length]
    if encoding in ("base64", "jsonParsed"):
        payload = '["' + base64.b64encode(data).decode() + '","base64"]'
    elif encoding in ("base58", "binary"):
        if len(data) > MAX_BASE58_BYTES:
            raise NodeError(-32600, _BASE58_TOO_LARGE)
        text = base58.b58encode(data).decode()
        payload = '"' + text + '"' if encoding == "binary" else '["' + text + '","base58"]'
    else:
        raise invalid_params(f"Invalid params: unsupported encoding {encoding}")
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


def transaction_bytes(encoded: Any, encoding: str) -> bytes:
    """A transaction parameter's wire bytes, with agave's limits and messages
    (`decode_and_deserialize` [AGV-RPC])."""
    if not isinstance(encoded, str):
        raise invalid_params("Invalid params: transaction must be a string")
    if encoding == "base64":
        if len(encoded) > MAX_BASE64_TX_CHARS:
            raise invalid_params(
                f"base64 encoded solana_transaction::versioned::VersionedTransaction too "
                f"large: {len(encoded)} bytes (max: encoded/raw {MAX_BASE64_TX_CHARS}/1232)"
            )
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid_params(f"invalid base64 encoding: {exc}") from None
    if encoding == "base58":
        if len(encoded) > MAX_BASE58_TX_CHARS:
            raise invalid_params(
                f"base58 encoded solana_transaction::versioned::VersionedTransaction too "
                f"large: {len(encoded)} bytes (max: encoded/raw {MAX_BASE58_TX_CHARS}/1232)"
            )
        try:
            return base58.b58decode(encoded)
        except ValueError as exc:
            raise invalid_params(f"invalid base58 encoding: {exc}") from None
    raise invalid_params(f"unsupported encoding: {encoding}. Supported encodings: base58, base64")


def check_pubkey(address: str) -> None:
    try:
        raw = base58.b58decode(address)
    except ValueError:
        raise invalid_params("Invalid param: Invalid") from None
    if len(raw) != 32:
        raise invalid_params("Invalid param: WrongSize")


def parse_filters(filters: Any) -> list[tuple[str, Any]]:
    """getProgramAccounts filters [AGV-FILT]: dataSize, memcmp, tokenAccountState."""
    if not isinstance(filters, list):
        raise invalid_params("Invalid params: filters must be an array")
    if len(filters) > MAX_PROGRAM_ACCOUNT_FILTERS:
        raise invalid_params(f"Too many filters provided; max {MAX_PROGRAM_ACCOUNT_FILTERS}")
    parsed: list[tuple[str, Any]] = []
    for item in filters:
        if item == "tokenAccountState":
            parsed.append(("tokenAccountState", None))
        elif isinstance(item, dict) and "dataSize" in item:
            parsed.append(("dataSize", int(item["dataSize"])))
        elif isinstance(item, dict) and isinstance(item.get("memcmp"), dict):
            memcmp = item["memcmp"]
            raw = _memcmp_bytes(memcmp)
            parsed.append(("memcmp", (int(memcmp.get("offset", 0)), raw)))
        else:
            raise invalid_params(f"Invalid params: unknown filter {item!r}")
    return parsed


def _memcmp_bytes(memcmp: dict[str, Any]) -> bytes:
    """A memcmp filter's bytes, bounded as the node bounds them (encoded and decoded)."""
    encoded, encoding = memcmp.get("bytes"), memcmp.get("encoding", "base58")
    if isinstance(encoded, list):
        raw = bytes(encoded)
    elif isinstance(encoded, str) and encoding == "base58":
        if len(encoded) > 175:
            raise invalid_params("encoded binary data should be less than 129 bytes")
        raw = base58.b58decode(encoded)
    elif isinstance(encoded, str) and encoding == "base64":
        if len(encoded) > 172:
            raise invalid_params("encoded binary data should be less than 129 bytes")
        raw = base64.b64decode(encoded)
    else:
        raise invalid_params("Invalid params: bad memcmp filter")
    if len(raw) > MAX_MEMCMP_BYTES:
        raise invalid_params("encoded binary data should be less than 129 bytes")
    return raw


def matches(rule: tuple[str, Any], data: bytes) -> bool:
    kind, value = rule
    if kind == "dataSize":
        return len(data) == value
    if kind == "memcmp":
        offset, raw = value
        return offset + len(raw) <= len(data) and data[offset : offset + len(raw)] == raw
    return len(data) == 165 and data[108] != 0  # tokenAccountState: an initialized account
