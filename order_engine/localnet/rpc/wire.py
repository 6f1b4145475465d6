"""The JSON-RPC wire: reading params, and results already serialised."""

from __future__ import annotations

import base64
from typing import Any

import base58

from order_engine.localnet.cluster.errors import NodeError

MAX_PROGRAM_ACCOUNT_FILTERS = 4
MAX_MEMCMP_BYTES = 128


class Raw:
    """A result already serialised as JSON text (assembled from cached fragments)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _invalid_params(message: str) -> NodeError:
    return NodeError(-32602, message)


def _check_pubkey(address: str) -> None:
    try:
        raw = base58.b58decode(address)
    except ValueError:
        raise _invalid_params("Invalid param: Invalid") from None
    if len(raw) != 32:
        raise _invalid_params("Invalid param: WrongSize")


def _parse_filters(filters: Any) -> list[tuple[str, Any]]:
    """getProgramAccounts filters [AGV-FILT]: dataSize, memcmp, tokenAccountState."""
    if not isinstance(filters, list):
        raise _invalid_params("Invalid params: filters must be an array")
    if len(filters) > MAX_PROGRAM_ACCOUNT_FILTERS:
        raise _invalid_params(f"Too many filters provided; max {MAX_PROGRAM_ACCOUNT_FILTERS}")
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
            raise _invalid_params(f"Invalid params: unknown filter {item!r}")
    return parsed


def _memcmp_bytes(memcmp: dict[str, Any]) -> bytes:
    """A memcmp filter's bytes, bounded as the node bounds them (encoded and decoded)."""
    encoded, encoding = memcmp.get("bytes"), memcmp.get("encoding", "base58")
    if isinstance(encoded, list):
        raw = bytes(encoded)
    elif isinstance(encoded, str) and encoding == "base58":
        if len(encoded) > 175:
            raise _invalid_params("encoded binary data should be less than 129 bytes")
        raw = base58.b58decode(encoded)
    elif isinstance(encoded, str) and encoding == "base64":
        if len(encoded) > 172:
            raise _invalid_params("encoded binary data should be less than 129 bytes")
        raw = base64.b64decode(encoded)
    else:
        raise _invalid_params("Invalid params: bad memcmp filter")
    if len(raw) > MAX_MEMCMP_BYTES:
        raise _invalid_params("encoded binary data should be less than 129 bytes")
    return raw


def _matches(rule: tuple[str, Any], data: bytes) -> bool:
    kind, value = rule
    if kind == "dataSize":
        return len(data) == value
    if kind == "memcmp":
        offset, raw = value
        return offset + len(raw) <= len(data) and data[offset : offset + len(raw)] == raw
    return len(data) == 165 and data[108] != 0  # tokenAccountState: an initialized account
