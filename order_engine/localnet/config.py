"""The localnet's settings, read once from the environment (and `.env`) into a typed dataclass.

Declared like the engine's (`order_engine.config`, which also holds LOCALNET_PORT and DEX_SEED,
read by both): a value that does not parse stops start-up with a message naming the variable.
The localnet reads only its own variables, so it can run on a machine with no database or
broker configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from order_engine.config import (
    DEX_SEED,
    LOCALNET,
    LOCALNET_PORT,
    STATE_DIR,
    LatencyRange,
    process_environment,
)
from order_engine.config.options import option, read
from order_engine.config.parsers import fraction, latency, path, text, whole


@dataclass(frozen=True, kw_only=True)
class LocalnetSettings:
    """Typed settings; build with `LocalnetSettings.from_env()` or directly in tests."""

    port: int = LOCALNET_PORT.field()
    state_dir: Path = option(
        "LOCALNET_STATE_DIR",
        path(),
        str(STATE_DIR / "localnet"),
        LOCALNET,
        "where the localnet keeps its ledger (one SQLite file), across restarts",
        shown="`.state/localnet`",
        example="/var/lib/order-engine/localnet",
    )
    seed: int = DEX_SEED.field()
    rpc_latency: LatencyRange = option(
        "DEX_RPC_LATENCY_MS",
        latency(),
        "0",
        LOCALNET,
        "added to every RPC answer: milliseconds, or a `min-max` range",
    )
    swap_latency: LatencyRange = option(
        "DEX_SWAP_LATENCY_MS",
        latency(),
        "2000-3000",
        LOCALNET,
        "from a transaction's send to its landing: milliseconds, or a `min-max` range",
    )
    transient_failure_rate: Decimal = option(
        "DEX_TRANSIENT_FAILURE_RATE",
        fraction(),
        "0",
        LOCALNET,
        "share of sends refused as the node being unhealthy",
    )
    expiry_rate: Decimal = option(
        "DEX_EXPIRY_RATE",
        fraction(),
        "0.002",
        LOCALNET,
        "share of sends accepted but never landed (each re-broadcast rolls again)",
    )
    # A blockhash is valid for 151 slots on Solana (solana.com/docs/advanced/confirmation).
    blockhash_validity_slots: int = option(
        "DEX_BLOCKHASH_VALIDITY_SLOTS",
        whole(2),
        "151",
        LOCALNET,
        "slots a blockhash stays valid (× LOCALNET_SLOT_MS)",
    )
    slot_ms: int = option(
        "LOCALNET_SLOT_MS", whole(10, 60_000), "400", LOCALNET, "milliseconds per slot"
    )
    # Mainnet's limits: agave cost-model/src/block_cost_limits.rs (60M since SIMD-0256).
    block_cu: int = option(
        "LOCALNET_BLOCK_CU",
        whole(1),
        "60000000",
        LOCALNET,
        "compute units one slot's block holds when the chain is congested (mainnet's)",
    )
    account_cu: int = option(
        "LOCALNET_ACCOUNT_CU",
        whole(1),
        "12000000",
        LOCALNET,
        "compute units of one slot's transactions that may write one account (mainnet's)",
    )
    # Loopback by default; a container sets 0.0.0.0 so the engine's containers reach it.
    host: str = option(
        "LOCALNET_HOST",
        text(),
        "127.0.0.1",
        LOCALNET,
        "the localnet's address (0.0.0.0 in a container, for the engine's containers)",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalnetSettings:
        env = dict(environ) if environ is not None else process_environment()
        return read(cls, env)

    def replace(self, **changes: object) -> LocalnetSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
