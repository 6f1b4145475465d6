"""The settings of orders that wait for a trigger (the trigger engine, docs/design.md), declared
apart from the others so that the engine's own settings stay together; `Settings` inherits them.
"""

from __future__ import annotations

from dataclasses import dataclass

from order_engine.config.groups import TRIGGERS
from order_engine.config.options import option
from order_engine.config.parsers import whole


@dataclass(frozen=True, kw_only=True)
class TriggerSettings:
    """Read before the other settings (a base class's fields come first); none of them names
    another setting."""

    limit_max_horizon_s: int = option(
        "LIMIT_MAX_HORIZON_S",
        whole(1),
        str(30 * 24 * 3600),
        TRIGGERS,
        "the latest `expiresAt` an order that waits may ask for, in seconds from now (30 days)",
    )
    trigger_interval_ms: int = option(
        "TRIGGER_INTERVAL_MS",
        whole(50, 60_000),
        "500",
        TRIGGERS,
        "milliseconds between evaluations of the waiting orders, and between steps of the TWAP "
        "schedules (about one slot; a step starts slices due within two of these ahead)",
    )
    stop_slippage_bps: int = option(
        "STOP_SLIPPAGE_BPS",
        whole(0, 5000),
        "300",
        TRIGGERS,
        "the slippage of a stop, OCO bracket or trailing stop that names none, in basis points: "
        "their promise is to get out, not a price, so it is wider than a market order's 50",
    )
