"""How long and how hard each measurement runs: the full plan, the short `--quick` one, and the
presets that run one phase alone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# The localnet's settings for a phase: how long a sent transaction takes to land, and each RPC
# call's own latency (the worker computes quotes itself from pool accounts read over RPC).
ZERO_LATENCY = {"DEX_SWAP_LATENCY_MS": "0", "DEX_RPC_LATENCY_MS": "0"}
DEFAULT_LATENCY = {"DEX_SWAP_LATENCY_MS": "2000-3000", "DEX_RPC_LATENCY_MS": "0"}


@dataclass(frozen=True)
class Plan:
    name: str
    # Intake: open-loop steps at these offered rates, and closed-loop saturation runs.
    intake_rates: tuple[int, ...] = (100, 200, 400)
    intake_step_s: float = 15
    intake_connections: int = 64
    saturation_s: float = 10
    saturation_concurrency: int = 32
    saturation_repeats: int = 3
    # End to end, once at zero venue latency (offered `e2e_rate`: the capacity) and once at the
    # default latency (offered `e2e_default_rate`: the target's 100 orders/s for 60 s).
    e2e_rate: int = 200
    e2e_default_rate: int = 100
    e2e_window_s: float = 60
    e2e_drain_s: float = 120
    e2e_connections: int = 64
    # Live updates: this many WebSocket subscribers over this many client processes.
    ws_subscribers: int = 2000
    ws_processes: int = 2
    ws_deadline_s: float = 300
    # Optional worker-memory soak at `e2e_default_rate` (the target asks 10 minutes).
    soak_minutes: float = 0.0
    # The peer load (`--preset peer`): this many orders posted back to back over this many
    # connections, each followed over its own WebSocket.
    peer_orders: int = 1000
    peer_connections: int = 50
    peer_deadline_s: float = 600
    # The trigger engine (`--preset triggers`): idle windows with none and with this many
    # waiting limit orders, then this many more crossed by one move of the market.
    triggers_waiting: int = 100_000
    triggers_crossing: int = 1000
    triggers_idle_s: float = 20
    triggers_deadline_s: float = 180
    # Stops, brackets and trailing stops (`--preset positions`; its idle windows and deadlines
    # are the triggers'): this many waiting, then this many crossed by one move.
    positions_waiting: int = 100_000
    positions_crossing: int = 600
    # TWAP orders (`--preset positions`, part `twap`): this many parents of this many slices,
    # this far apart, submitted over one interval.
    twap_parents: int = 40
    twap_slices: int = 10
    twap_interval_s: int = 3
    # The export (`--preset positions`, part `export`): this many fills seeded, then exported.
    export_rows: int = 1_000_000
    # The contested chain (`--preset contested`): this many market orders per landing strategy,
    # offered at this rate, each strategy's drained within this long.
    contested_orders: int = 1000
    contested_rate: int = 20
    contested_deadline_s: float = 420
    # Which of its strategies, by their short names (`bench.contested.STRATEGIES`), and how
    # many congested slots clear before the first strategy's orders go out (0: at the onset).
    contested_strategies: str = "fixed,auto,bundle"
    contested_warm_slots: int = 20

    def with_overrides(self, **changes: Any) -> Plan:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


FULL = Plan(name="full")
QUICK = Plan(
    name="quick",
    intake_step_s=3,
    saturation_s=3,
    saturation_repeats=1,
    e2e_window_s=15,
    e2e_drain_s=10,
    ws_subscribers=200,
    ws_processes=1,
    ws_deadline_s=45,
    peer_orders=200,
    peer_deadline_s=180,
    triggers_waiting=10_000,
    triggers_crossing=200,
    triggers_idle_s=8,
    triggers_deadline_s=90,
    positions_waiting=10_000,
    positions_crossing=150,
    twap_parents=10,
    twap_slices=4,
    twap_interval_s=2,
    export_rows=100_000,
    contested_orders=200,
)
# A preset runs one phase alone, with the full plan's figures for it (`--quick`: the quick's).
# `positions`: the position-keeping order types' parts (bench/positions), each a phase.
PRESETS = {"peer": ("peer",), "triggers": ("triggers",), "positions": ("stops", "twap", "export")}
PRESETS["contested"] = ("contested",)
