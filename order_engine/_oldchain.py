"""A Solana-shaped simulated chain: slots, blockhashes, signatures, landing and a ledger.

Facts it mirrors (research/dex.md §3): slots of ~400 ms; a blockhash is valid for 151 slots;
a transaction is identified by its 64-byte ed25519 signature, shown in base58; the cluster
processes a sent transaction whether or not the sender is still around; a swap whose legs pay
out less than its `minAmountOut` lands as *failed* (a program error) rather than filling; and a
transaction that is not included before its blockhash expires never lands.

A sent transaction is written to `sim_transactions` as `sent` with the slot it will be included
in, and processed once that time has come by whoever looks first (the sender confirming it, or a
reconciler asking for its status), under a row lock, so it lands at most once even if sent
twice. Landing first lets the market's arbitrage move each pool to the market price of that
instant, then applies the legs atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from dataclasses import dataclass
from typing import Any, cast

import base58
import redis
from sqlalchemy import Connection, Engine, Row, Table, select, update
from sqlalchemy.dialects.postgresql import insert

from order_engine.config import Settings
from order_engine.models import SimTransaction
from order_engine.venues import pools
from order_engine.venues.clock import SLOT_MS, WallClock, slot_at, slot_start_ms
from order_engine.venues.errors import (
    BlockhashExpired,
    ExecutionError,
    RpcUnavailable,
    TransactionDropped,
)
from order_engine.venues.simulated import PoolStore

log = logging.getLogger(__name__)

PRICE_JUMP_BPS = 500  # inside a DLMM pool's ±7 % of bins
FAULTS_KEY = "sim:faults:{memo}"


@dataclass(frozen=True)
class Blockhash:
    value: str
    slot: int
    last_valid_block_height: int


@dataclass(frozen=True)
class SwapLeg:
    pool_id: str
    swap_for_y: bool
    amount_in: int


@dataclass(frozen=True)
class SwapTransaction:
    """A signed swap transaction, as the engine built it: one or two legs, one minimum out."""

    signature: str
    memo: str
    legs: tuple[SwapLeg, ...]
    min_amount_out: int
    blockhash: Blockhash
    compute_unit_limit: int
    compute_unit_price_micro_lamports: int

    @property
    def amount_in(self) -> int:
        return sum(leg.amount_in for leg in self.legs)


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
        self,
        engine: Engine,
        pools_store: PoolStore,
        settings: Settings,
        redis_client: redis.Redis | None,
        clock: Any = None,
    ) -> None:
        self.engine = engine
        self.pools = pools_store
        self.settings = settings
        self.redis = redis_client
        self.clock = clock or WallClock()

    # -- the cluster's clock -------------------------------------------------------------

    def current_slot(self) -> int:
        return slot_at(self.clock.now_ms())

    def latest_blockhash(self) -> Blockhash:
        slot = self.current_slot()
        digest = hashlib.sha256(f"{self.settings.dex_seed}:blockhash:{slot}".encode()).digest()
        validity = self.settings.dex_blockhash_validity_slots
        return Blockhash(base58.b58encode(digest).decode(), slot, slot + validity)

    def wait_until_expired(self, last_valid_block_height: int) -> None:
        """Block until no transaction built on that blockhash can be included any more."""
        wait_ms = slot_start_ms(last_valid_block_height + 1) - self.clock.now_ms()
        if wait_ms > 0:
            self.clock.sleep_ms(wait_ms)

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
        now_ms = self.clock.now_ms()
        land_at_ms = now_ms + self.settings.dex_swap_latency.sample_ms(rng)
        if fault is None and rng.random() < float(self.settings.dex_expiry_rate):
            # Congestion: the leader never includes it and the blockhash runs out.
            fault = "congestion"
        detail = {
            "legs": [[leg.pool_id, leg.swap_for_y, str(leg.amount_in)] for leg in tx.legs],
            "minAmountOut": str(tx.min_amount_out),
            "blockhash": tx.blockhash.value,
            "lastValidBlockHeight": tx.blockhash.last_valid_block_height,
            "computeUnitLimit": tx.compute_unit_limit,
            "landAtMs": land_at_ms,
            "fault": fault,
        }
        with self.engine.begin() as conn:
            inserted = conn.execute(
                insert(SimTransaction)
                .values(
                    signature=tx.signature,
                    memo=tx.memo,
                    status="sent",
                    slot=slot_at(now_ms),
                    detail=detail,
                    amount_in=tx.amount_in,
                    amount_out=0,
                )
                .on_conflict_do_nothing()
                .returning(SimTransaction.signature)
            ).first()
            accepted_ms = self.clock.now_ms()
            if inserted is not None and slot_at(accepted_ms) > tx.blockhash.last_valid_block_height:
                # It reached the cluster only after its blockhash expired (a stalled sender):
                # the cluster rejects it, so it can never land.
                conn.execute(
                    update(SimTransaction)
                    .where(SimTransaction.signature == tx.signature)
                    .values(
                        status="expired",
                        error_code=BlockhashExpired.code,
                        error_message="arrived after its blockhash expired",
                    )
                )
        if fault == "lost_response":
            # The cluster has the transaction, but the sender never hears back: the classic
            # double-spend trap if the engine re-sends blindly.
            raise RpcUnavailable("RPC timed out after the transaction was forwarded")

    def confirm_transaction(self, signature: str, timeout_s: float) -> TransactionStatus:
        """Wait until the transaction is processed; return its final status."""
        deadline_ms = self.clock.now_ms() + int(timeout_s * 1000)
        while True:
            status = self._process(signature)
            if status is None:
                raise TransactionDropped(f"{signature} is unknown to the cluster")
            if status.is_final:
                return status
            now_ms = self.clock.now_ms()
            if now_ms > deadline_ms:
                raise TransactionDropped(f"{signature} not processed within {timeout_s}s")
            # The landing time is known: sleep until then instead of polling the ledger.
            self.clock.sleep_ms(max(status.land_at_ms - now_ms, 5))

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
        table = cast(Table, SimTransaction.__table__)
        with self.engine.begin() as conn:
            tx = conn.execute(
                select(table).where(table.c.signature == signature).with_for_update()
            ).first()
            if tx is None:
                return None
            if tx.status != "sent" or self.clock.now_ms() < tx.detail["landAtMs"]:
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
        land_ms = int(detail["landAtMs"])
        land_slot = slot_at(land_ms)
        if detail.get("fault") == "congestion":
            land_slot = detail["lastValidBlockHeight"] + 1
        if land_slot > detail["lastValidBlockHeight"]:
            return {
                "status": "expired",
                "slot": land_slot,
                "error_code": BlockhashExpired.code,
                "error_message": "blockhash expired before the transaction was included",
            }
        if detail.get("fault") == "drop":
            return {
                "status": "dropped",
                "slot": land_slot,
                "error_code": TransactionDropped.code,
                "error_message": "transaction dropped by the leader",
            }
        legs = [
            (pool_id, swap_for_y, int(amount)) for pool_id, swap_for_y, amount in detail["legs"]
        ]
        # Lock pools in one global order so concurrent two-leg swaps cannot deadlock.
        states = {pid: self.pools.lock(conn, pid) for pid in sorted({leg[0] for leg in legs})}
        market = {pid: self.pools.catch_up(pid, s, land_ms) for pid, s in states.items()}
        if detail.get("fault") == "price_jump":
            market = {pid: self._adverse_move(s, legs, pid, land_ms) for pid, s in market.items()}
        try:
            after, amount_out = self._apply_legs(market, legs, land_ms)
        except ExecutionError as error:
            self._save_all(conn, market)
            return {
                "status": "failed",
                "slot": land_slot,
                "error_code": error.code,
                "error_message": error.message,
            }
        min_out = int(detail["minAmountOut"])
        if amount_out < min_out:
            self._save_all(conn, market)  # the market moved; our swap reverted
            return {
                "status": "failed",
                "slot": land_slot,
                "error_code": "SLIPPAGE_EXCEEDED",
                "error_message": f"would receive {amount_out} atoms, below the minimum {min_out}",
            }
        self._save_all(conn, after)
        return {"status": "landed", "slot": land_slot, "amount_out": amount_out}

    def _apply_legs(
        self, states: dict[str, dict[str, Any]], legs: list[tuple[str, bool, int]], land_ms: int
    ) -> tuple[dict[str, dict[str, Any]], int]:
        after = dict(states)
        total_out = 0
        for pool_id, swap_for_y, amount_in in legs:
            outcome = pools.swap(after[pool_id], amount_in, swap_for_y, land_ms // 1000)
            after[pool_id] = outcome.new_state
            total_out += outcome.amount_out
        return after, total_out

    def _save_all(self, conn: Connection, states: dict[str, dict[str, Any]]) -> None:
        for pool_id, state in states.items():
            self.pools.save(conn, pool_id, state)

    def _adverse_move(
        self, state: dict[str, Any], legs: list[tuple[str, bool, int]], pool_id: str, land_ms: int
    ) -> dict[str, Any]:
        """Test hook: a large trade in the order's own direction just before it lands."""
        swap_for_y = next(leg[1] for leg in legs if leg[0] == pool_id)
        mid = pools.mid_price(state)
        jumped = (
            mid * (10_000 - PRICE_JUMP_BPS) / 10_000
            if swap_for_y
            else (mid * (10_000 + PRICE_JUMP_BPS) / 10_000)
        )
        return pools.arbitrage(state, jumped, land_ms // 1000)

    def _next_fault(self, memo: str) -> str | None:
        """Test hook: faults planted by tests for one order (by its clientOrderId), one per send.

        Kinds: rpc_unavailable, lost_response, drop, price_jump, crash_sender.
        """
        if not memo or self.redis is None:
            return None
        fault = self.redis.lpop(FAULTS_KEY.format(memo=memo))
        return None if fault is None else str(fault)


def blockhash_expires_at_ms(blockhash: Blockhash) -> int:
    return slot_start_ms(blockhash.last_valid_block_height) + SLOT_MS


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
