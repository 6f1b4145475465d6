"""The executor: one order's attempt, from its claim to its confirmation, retry or failure."""

from order_engine.services.execution.service import (
    ExecutionService,
    Outcome,
    RetryLater,
    execution_service,
    new_executor_id,
)

__all__ = ["ExecutionService", "Outcome", "RetryLater", "execution_service", "new_executor_id"]
