"""The trigger engine: orders that wait in PostgreSQL until the market meets them
(docs/design.md, "The trigger engine"). `engine` runs an evaluation."""

from order_engine.services.triggers.engine import (
    Evaluation,
    OrderExpired,
    TriggerService,
    meets,
    pool_price_bound,
    required_out_atoms,
    sniper_trigger_price,
    trigger_service,
    ui_price_bound,
    waiting_for,
)

__all__ = [
    "Evaluation",
    "OrderExpired",
    "TriggerService",
    "meets",
    "pool_price_bound",
    "required_out_atoms",
    "sniper_trigger_price",
    "trigger_service",
    "ui_price_bound",
    "waiting_for",
]
