"""A Solana-shaped simulated chain: slots, blockhashes, signatures, landing and a ledger.

Facts it mirrors (research/dex.md §3): slots of ~400 ms; a blockhash is valid for 151 slots;
a transaction is identified by its 64-byte ed25519 signature, shown in base58; the cluster
processes a sent transaction whether or not the sender is still around, and a swap that would
pay out less than its `minAmountOut` lands as *failed* (program error) rather than filling.

A sent transaction is written to `sim_transactions` as `sent` and processed once its landing
time has come by whoever looks first (the sender confirming it, or a reconciler asking for its
status), under a row lock, so a transaction lands at most once even if sent twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import base58
import redis
from sqlalchemy import Connection, Engine, Row, select, update
from sqlalchemy.dialects.postgresql import insert

from order_engine.config import Settings
from order_engine.models import SimTransaction
from order_engine.venues.errors import BlockhashExpired, RpcUnavailable, TransactionDropped
from order_engine.venues.simulated import PoolStore, simulate_swap

log = logging.getLogger(__name__)

SLOT_MS = 400
BLOCKHASH_VALIDITY_SLOTS = 151
# Slot 0 of the simulated cluster; any fixed instant works, it only has to be shared.
GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# Other traders move each pool as a random walk in time: this many bps of reserves per √second
# (so the move between a quote and its landing does not grow with our own order count).
BACKGROUND_FLOW_BPS_PER_SQRT_S = 10
MAX_FLOW_BPS = 200
PRICE_JUMP_BPS = 1_000
FAULTS_KEY = "sim:faults:{memo}"


@dataclass(frozen=True)
class Blockhash:
    value: str
    slot: int
    last_valid_block_height: int


@dataclass(frozen=True)
class SwapTransaction:
    """A signed swap transaction, as the engine built it."""

    signature: str
    memo: str
    pool_id: str
    swap_for_y: bool
    amount_in: int
    min_amount_out: int
    blockhash: Blockhash
    compute_unit_limit: int
    compute_unit_price_micro_lamports: int


@dataclass(frozen=True)
class TransactionStatus:
    signature: str
    status: str  # sent | landed | failed | expired | dropped
    slot: int
    amount_in: int
    amount_out: int
    error_code: str | None
    error_message: str | None
    land_at_ms: int

    @property
    def is_final(self) -> bool:
        return self.status != "sent"


def signature_for(seed: int, order_id: str, attempt: int) -> str:
    """Deterministic per order and attempt, so re-sending one attempt is idempotent."""
    digest = hashlib.sha512(f"{seed}:signature:{order_id}:{attempt}".encode()).digest()
    return base58.b58encode(digest).decode()


class SimulatedChain:
    def __init__(
        self, engine: Engine, pools: PoolStore, settings: Settings, redis_client: redis.Redis
    ) -> None:
        self.engine = engine
        self.pools = pools
        self.settings = settings
        self.redis = redis_client

    # -- the cluster's clock -------------------------------------------------------------

    def current_slot(self) -> int:
        return (time.time_ns() // 1_000_000 - GENESIS_MS) // SLOT_MS

    def latest_blockhash(self) -> Blockhash:
        slot = self.current_slot()
        digest = hashlib.sha256(f"{self.settings.dex_seed}:blockhash:{slot}".encode()).digest()
        return Blockhash(base58.b58encode(digest).decode(), slot, slot + BLOCKHASH_VALIDITY_SLOTS)

    # -- RPC ------------------------------------------------------------------------------

    def send_transaction(self, tx: SwapTransaction) -> None:
        """Hand the transaction to the cluster. Idempotent per signature.

        Raises RpcUnavailable (retryable) when the simulated RPC fails before accepting it.
        """
        rng = random.Random(f"{self.settings.dex_seed}:send:{tx.signature}")
        fault = self._next_fault(tx.memo)
        if fault == "crash_sender":
            # Test hook: the sending process dies mid-send (a poison order, an OOM kill).
            os._exit(137)
        if fault == "rpc_unavailable" or (
            fault is None and rng.random() < float(self.settings.dex_transient_failure_rate)
        ):
            raise RpcUnavailable("RPC node unavailable: transaction not accepted")
        land_in_ms = self.settings.dex_swap_latency.sample_ms(rng)
        detail = {
            "poolId": tx.pool_id,
            "swapForY": tx.swap_for_y,
            "minAmountOut": str(tx.min_amount_out),
            "blockhash": tx.blockhash.value,
            "lastValidBlockHeight": tx.blockhash.last_valid_block_height,
            "computeUnitLimit": tx.compute_unit_limit,
            "landAtMs": time.time_ns() // 1_000_000 + land_in_ms,
            "fault": fault,
        }
        with self.engine.begin() as conn:
            conn.execute(
                insert(SimTransaction)
                .values(
                    signature=tx.signature,
                    memo=tx.memo,
                    status="sent",
                    slot=self.current_slot(),
                    detail=detail,
                    amount_in=tx.amount_in,
                    amount_out=0,
                )
                .on_conflict_do_nothing()
            )
        if fault == "lost_response":
            # The cluster has the transaction, but the sender never hears back: the classic
            # double-spend trap if the engine re-sends blindly.
            raise RpcUnavailable("RPC timed out after the transaction was forwarded")

    def confirm_transaction(self, signature: str, timeout_s: float) -> TransactionStatus:
        """Wait until the transaction is processed; return its final status."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self._process(signature)
            if status is None:
                raise TransactionDropped(f"{signature} is unknown to the cluster")
            if status.is_final:
                return status
            if time.monotonic() > deadline:
                raise TransactionDropped(f"{signature} not processed within {timeout_s}s")
            wait_ms = status.land_at_ms - time.time_ns() // 1_000_000
            time.sleep(min(max(wait_ms, 5), 250) / 1000)

    def signature_statuses(self, signatures: list[str]) -> dict[str, TransactionStatus]:
        """Status of each known signature (processing any now due), like getSignatureStatuses."""
        found = {}
        for signature in signatures:
            status = self._process(signature)
            if status is not None:
                found[signature] = status
        return found

    # -- the cluster's side ---------------------------------------------------------------

    def _process(self, signature: str) -> TransactionStatus | None:
        table = SimTransaction.__table__
        with self.engine.begin() as conn:
            tx = conn.execute(
                select(table).where(table.c.signature == signature).with_for_update()
            ).first()
            if tx is None:
                return None
            now_ms = time.time_ns() // 1_000_000
            if tx.status != "sent" or now_ms < tx.detail["landAtMs"]:
                return _status(tx)
            values = self._execute(conn, tx)
            processed = conn.execute(
                update(table)
                .where(table.c.signature == signature)
                .values(**values)
                .returning(*table.c)
            ).one()
            return _status(processed)

    def _execute(self, conn: Connection, tx: Row[Any]) -> dict[str, Any]:
        detail = tx.detail
        land_slot = (detail["landAtMs"] - GENESIS_MS) // SLOT_MS
        if land_slot > detail["lastValidBlockHeight"]:
            return {
                "status": "expired",
                "slot": land_slot,
                "error_code": BlockhashExpired.code,
                "error_message": "blockhash expired before the transaction landed",
            }
        if detail.get("fault") == "drop":
            return {
                "status": "dropped",
                "slot": land_slot,
                "error_code": TransactionDropped.code,
                "error_message": "transaction dropped by the leader",
            }
        state = self.pools.lock(conn, detail["poolId"])
        state = self._background_flow(state, tx, int(detail["landAtMs"]))
        if detail.get("fault") == "price_jump":
            state = self._adverse_move(state, detail["swapForY"], PRICE_JUMP_BPS)
        outcome = simulate_swap(state, int(tx.amount_in), detail["swapForY"])
        min_out = int(detail["minAmountOut"])
        if outcome.amount_out < min_out:
            self.pools.save(conn, detail["poolId"], state)
            return {
                "status": "failed",
                "slot": land_slot,
                "error_code": "SLIPPAGE_EXCEEDED",
                "error_message": f"would receive {outcome.amount_out} atoms, below the "
                f"minimum {min_out}",
            }
        self.pools.save(conn, detail["poolId"], outcome.new_state)
        return {"status": "landed", "slot": land_slot, "amount_out": outcome.amount_out}

    def _background_flow(self, state: dict[str, Any], tx: Row[Any], now_ms: int) -> dict[str, Any]:
        """Other traders' net flow since the pool last traded: a Gaussian random walk in time."""
        last_ms = int(state.get("flow_at_ms", now_ms))
        elapsed_s = max(0, now_ms - last_ms) / 1000
        rng = random.Random(f"{self.settings.dex_seed}:flow:{tx.signature}")
        move_bps = rng.gauss(0, BACKGROUND_FLOW_BPS_PER_SQRT_S * elapsed_s**0.5)
        move_bps = max(-MAX_FLOW_BPS, min(MAX_FLOW_BPS, move_bps))
        sell_x = move_bps < 0
        reserve_in = int(state["reserve_x"] if sell_x else state["reserve_y"])
        size = reserve_in * round(abs(move_bps) * 100) // 1_000_000
        if size > 0:
            state = simulate_swap(state, size, sell_x).new_state
        return {**state, "flow_at_ms": now_ms}

    def _adverse_move(self, state: dict[str, Any], swap_for_y: bool, bps: int) -> dict[str, Any]:
        """A large trade in the order's own direction, just before it lands."""
        reserve_in = int(state["reserve_x"] if swap_for_y else state["reserve_y"])
        return simulate_swap(state, reserve_in * bps // 10_000, swap_for_y).new_state

    def _next_fault(self, memo: str) -> str | None:
        """Test hook: faults planted by tests for one order (by its clientOrderId), one per send.

        Kinds: rpc_unavailable, lost_response, drop, price_jump, crash_sender.
        """
        if not memo:
            return None
        return self.redis.lpop(FAULTS_KEY.format(memo=memo))


def _status(tx: Row[Any]) -> TransactionStatus:
    return TransactionStatus(
        signature=tx.signature,
        status=tx.status,
        slot=int(tx.slot),
        amount_in=int(tx.amount_in),
        amount_out=int(tx.amount_out),
        error_code=tx.error_code,
        error_message=tx.error_message,
        land_at_ms=int(tx.detail["landAtMs"]),
    )
