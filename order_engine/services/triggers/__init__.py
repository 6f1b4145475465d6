"""The trigger engine: orders that wait in PostgreSQL until the market meets them
(docs/design.md, "The trigger engine"). `engine` runs an evaluation; each order type's
conditions are its own module's (`limits`, `stops`, `brackets`, `trailing`); `intake` is what a
waiting order is when it is accepted, `describe` what its events say it waits for."""

from order_engine.services.triggers.describe import awaited, waiting_for
from order_engine.services.triggers.engine import (
    Evaluation,
    OrderExpired,
    TriggerService,
    trigger_service,
)
from order_engine.services.triggers.limits import (
    meets,
    pool_price_bound,
    required_out_atoms,
    sniper_trigger_price,
    ui_price_bound,
)

__all__ = [
    "Evaluation",
    "OrderExpired",
    "TriggerService",
    "awaited",
    "meets",
    "pool_price_bound",
    "required_out_atoms",
    "sniper_trigger_price",
    "trigger_service",
    "ui_price_bound",
    "waiting_for",
]
