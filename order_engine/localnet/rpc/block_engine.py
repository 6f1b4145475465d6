"""The block engine's JSON-RPC methods, on Jito's paths (https://docs.jito.wtf/lowlatencytxnsend/):

* POST `/api/v1/bundles`: `sendBundle [[tx…≤5], {"encoding"}]` -> the bundle id;
  `getBundleStatuses [[ids≤5]]` -> `{context: {slot}, value: [{bundle_id, transactions, slot,
  confirmation_status, err: {"Ok": null}} | null]}` (landed bundles only);
  `getInflightBundleStatuses [[ids≤5]]` -> `{context, value: [{bundle_id, status, landed_slot}]}`
  (`Invalid` | `Pending` | `Failed` | `Landed`); `getTipAccounts []` -> 8 addresses;
* POST `/api/v1/transactions`: `sendTransaction [tx, {"encoding"}]` -> the signature, sent as a
  bundle of one (revert-protected, never public);
* GET `/api/v1/bundles/tip_floor` -> `[{time, landed_tips_25th_percentile, …_50th…, …_75th…,
  …_95th…, …_99th…, ema_landed_tips_50th_percentile}]`, in SOL.

Transactions are base58 by default, as the block engine takes them; base64 with
`{"encoding": "base64"}`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from order_engine.localnet.cluster import Cluster
from order_engine.localnet.cluster.bundles import MAX_BUNDLE_TRANSACTIONS, MIN_TIP_LAMPORTS
from order_engine.localnet.cluster.errors import NodeError
from order_engine.localnet.cluster.ledger import FINALIZED_DEPTH
from order_engine.localnet.rpc.wire import (
    config_of,
    invalid_params,
    positional,
    transaction_bytes,
)

LAMPORTS_PER_SOL = 1_000_000_000


class BlockEngineMethods:
    """The bundle and transaction methods over a cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def bundles_table(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "sendBundle": self._send_bundle,
            "getBundleStatuses": self._get_bundle_statuses,
            "getInflightBundleStatuses": self._get_inflight_bundle_statuses,
            "getTipAccounts": lambda params: list(self.cluster.sender.tip_accounts),
        }

    def transactions_table(self) -> dict[str, Callable[[Any], Any]]:
        return {"sendTransaction": self._send_transaction}

    def _send_bundle(self, params: Any) -> str:
        encoded = positional(params, 0, "transactions")
        if not isinstance(encoded, list):
            raise invalid_params("Invalid params: transactions must be an array")
        if len(encoded) > MAX_BUNDLE_TRANSACTIONS:
            raise invalid_params(
                f"bundle contains {len(encoded)} transactions, more than the maximum of "
                f"{MAX_BUNDLE_TRANSACTIONS}"
            )
        encoding = config_of(params, 1).get("encoding") or "base58"
        raws = []
        for index, item in enumerate(encoded):
            try:
                raws.append(transaction_bytes(item, encoding))
            except NodeError as exc:
                raise invalid_params(f"transaction {index}: {exc.message}") from None
        return self.cluster.send_bundle(raws)

    def _send_transaction(self, params: Any) -> str:
        encoded = positional(params, 0, "transaction")
        encoding = config_of(params, 1).get("encoding") or "base58"
        return self.cluster.send_protected(transaction_bytes(encoded, encoding))

    def _ids(self, params: Any) -> list[str]:
        ids = positional(params, 0, "bundle ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise invalid_params("Invalid params: bundle ids must be an array of strings")
        if len(ids) > MAX_BUNDLE_TRANSACTIONS:
            raise invalid_params(f"Too many bundle ids provided; max {MAX_BUNDLE_TRANSACTIONS}")
        return ids

    def _get_bundle_statuses(self, params: Any) -> dict[str, Any]:
        ids = self._ids(params)
        self.cluster.advance()
        slot = self.cluster.current_slot()
        book = self.cluster.bundles
        value = [book.landed_status(bundle, slot, FINALIZED_DEPTH) for bundle in ids]
        return {"context": {"slot": slot}, "value": value}

    def _get_inflight_bundle_statuses(self, params: Any) -> dict[str, Any]:
        ids = self._ids(params)
        self.cluster.advance()
        now_ms = self.cluster.now_ms()
        book = self.cluster.bundles
        value = [book.inflight(bundle, now_ms) for bundle in ids]
        return {"context": {"slot": self.cluster.current_slot()}, "value": value}


def tip_floor_text(cluster: Cluster) -> str:
    """The tip floor's JSON text: SOL amounts as exact decimal numbers (no binary floats). With
    no landed bundle in the window, every figure is the minimum tip."""
    cluster.advance()
    floor = cluster.fees.tip_floor(cluster.current_slot(), cluster.now_ms())
    parts = ['"time":"' + floor.pop("time") + '"']
    for name, lamports in floor.items():
        amount = Decimal(MIN_TIP_LAMPORTS if lamports is None else lamports) / LAMPORTS_PER_SOL
        parts.append(f'"{name}":{format(amount.normalize(), "f")}')
    return "[{" + ",".join(parts) + "}]"
