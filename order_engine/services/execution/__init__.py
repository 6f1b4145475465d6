"""The executor: one order's attempt, from its claim to its confirmation, retry or failure.

Every step is a compare-and-set transition committed on its own (never holding a transaction
across a chain call), followed by a publish of its event. The worker holds a lease on the order
while it runs; a transition only applies while that lease is ours, so a duplicate delivery or a
second worker that took over an expired lease can never move the order twice.

Never two swaps for one order: an order keeps the signed transaction of its latest attempt and
that transaction's blockhash expiry. Before anything new is built, that transaction is settled
by asking the chain: landed → recorded; failed on chain → a new attempt may go; unknown while
its blockhash is valid → the same bytes are re-broadcast (the chain processes a signature at
most once); unknown after expiry → it can never land, so a new transaction may go. No task
ever sleeps waiting for a blockhash to expire (docs/design.md).

Retries: a retryable failure with attempts left puts the order back to `pending` (with the
error and when the next attempt runs) and raises `RetryLater`, which the Celery task turns into
a retry with that countdown. The database counts attempts; the last one ends in `failed`, once.

The modules, by job: `service` (how a delivery comes to its order), `attempt` (the attempt and
its outcomes), `steps` (its transitions), `run` (the happy path: route, build, send, settle),
`recover` (what is already on its way), `fail` (retry or fail), with the executor's own helpers
`retry_policy` and `swap_transaction`.
"""

from order_engine.services.execution.attempt import LeaseLost, Outcome, RetryLater
from order_engine.services.execution.service import (
    ExecutionService,
    execution_service,
    new_executor_id,
)

__all__ = [
    "ExecutionService",
    "LeaseLost",
    "Outcome",
    "RetryLater",
    "execution_service",
    "new_executor_id",
]
