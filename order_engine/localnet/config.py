"""The localnet's settings, read once from the environment (and `.env`) into a typed dataclass.

Same parsing rules as the engine's `order_engine.config` (whose helpers it reuses): a value that
does not parse stops start-up with a message naming the variable. The localnet reads only its
own variables, so it can run on a machine with no database or broker configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from order_engine.config import (
    PROJECT_ROOT,
    STATE_DIR,
    LatencyRange,
    _parse_int,
    _parse_latency,
    _parse_rate,
    _process_environment,
)

DEFAULT_PORT = 8899  # solana-test-validator's RPC port


@dataclass(frozen=True)
class LocalnetSettings:
    """Typed settings; build with `LocalnetSettings.from_env()` or directly in tests."""

    port: int = DEFAULT_PORT
    state_dir: Path = PROJECT_ROOT / ".state" / "localnet"
    seed: int = 7
    rpc_latency: LatencyRange = LatencyRange(0, 0)
    swap_latency: LatencyRange = LatencyRange(2000, 3000)
    transient_failure_rate: Decimal = Decimal(0)
    expiry_rate: Decimal = Decimal("0.002")
    blockhash_validity_slots: int = 151
    slot_ms: int = 400
    host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalnetSettings:
        env = dict(environ) if environ is not None else _process_environment()
        get = env.get
        state_dir = get("LOCALNET_STATE_DIR") or str(STATE_DIR / "localnet")
        return cls(
            port=_parse_int("LOCALNET_PORT", get("LOCALNET_PORT", str(DEFAULT_PORT)), 1, 65535),
            state_dir=Path(state_dir),
            seed=_parse_int("DEX_SEED", get("DEX_SEED", "7"), 0),
            rpc_latency=_parse_latency("DEX_RPC_LATENCY_MS", get("DEX_RPC_LATENCY_MS", "0")),
            swap_latency=_parse_latency(
                "DEX_SWAP_LATENCY_MS", get("DEX_SWAP_LATENCY_MS", "2000-3000")
            ),
            transient_failure_rate=_parse_rate(
                "DEX_TRANSIENT_FAILURE_RATE", get("DEX_TRANSIENT_FAILURE_RATE", "0")
            ),
            expiry_rate=_parse_rate("DEX_EXPIRY_RATE", get("DEX_EXPIRY_RATE", "0.002")),
            # Solana: a blockhash is valid for 151 slots (research/solana-rpc.md §2).
            blockhash_validity_slots=_parse_int(
                "DEX_BLOCKHASH_VALIDITY_SLOTS", get("DEX_BLOCKHASH_VALIDITY_SLOTS", "151"), 2
            ),
            slot_ms=_parse_int("LOCALNET_SLOT_MS", get("LOCALNET_SLOT_MS", "400"), 10, 60_000),
            # Loopback by default; a container sets 0.0.0.0 so the engine's containers reach it.
            host=get("LOCALNET_HOST") or "127.0.0.1",
        )

    def replace(self, **changes: object) -> LocalnetSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
