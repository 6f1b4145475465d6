"""Rules across settings: start-up refuses settings that contradict each other, and says why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from order_engine.config.parsers import ConfigError

if TYPE_CHECKING:
    from order_engine.config import Settings


def check_timings(settings: Settings) -> None:
    """Refuse timings under which a message could be redelivered while its task still runs.

    Redis redelivers an unacknowledged message after the visibility timeout (Celery's
    documentation: "Using Redis", "Visibility timeout"), so a task that can still be running
    (time limit) or waiting on its retry countdown by then would run twice. The database
    lease must outlive the task and expire before redelivery, so the redelivered task finds
    it free.
    """
    if settings.retry_backoff_max_s < settings.retry_backoff_s:
        raise ConfigError("ORDER_RETRY_BACKOFF_MAX_S must be >= ORDER_RETRY_BACKOFF_S")
    if not settings.task_time_limit_s < settings.order_lease_s:
        raise ConfigError(
            f"ORDER_LEASE_S ({settings.order_lease_s}) must exceed "
            f"TASK_TIME_LIMIT_S ({settings.task_time_limit_s})"
        )
    # The longest wait inside a task: the confirmation of its transaction, plus the RPC
    # calls around it (blockhash, send, accounts, balances), each bounded by its timeout.
    longest_wait_s = settings.confirm_timeout_s + 4 * settings.rpc_timeout_s
    if not longest_wait_s < settings.task_time_limit_s:
        raise ConfigError(
            f"TASK_TIME_LIMIT_S ({settings.task_time_limit_s}) must exceed CONFIRM_TIMEOUT_S + "
            f"4 × RPC_TIMEOUT_S ({longest_wait_s}), the longest a task waits on the chain"
        )
    longest_hold = settings.order_lease_s + settings.retry_backoff_max_s
    if not longest_hold < settings.visibility_timeout_s:
        raise ConfigError(
            f"BROKER_VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_s}) must exceed "
            f"ORDER_LEASE_S + ORDER_RETRY_BACKOFF_MAX_S ({longest_hold})"
        )
