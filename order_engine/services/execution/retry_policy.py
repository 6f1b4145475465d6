"""When a failed attempt runs again: exponential backoff with jitter, except for a transaction
whose fate is still open, which is asked about again once it can no longer land."""

from __future__ import annotations

import random

from order_engine.config import Settings
from order_engine.domain.errors import ExecutionError, TransactionUnconfirmed


def backoff_seconds(settings: Settings, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, never zero-ish.

    Full jitter can draw a 0 s retry (the AWS Architecture Blog's "Exponential Backoff And
    Jitter" compares the two), which hammers a node that is down; keeping half of the delay
    fixed avoids that while still spreading retries.
    """
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def unconfirmed_countdown(settings: Settings, error: ExecutionError) -> float | None:
    """An unconfirmed transaction is asked about again once it can no longer land, but never
    later than the broker can hold a message (visibility timeout minus the lease): an earlier
    look re-broadcasts it instead. None: the usual backoff."""
    if not isinstance(error, TransactionUnconfirmed) or error.retry_after_s is None:
        return None
    longest = settings.visibility_timeout_s - settings.order_lease_s - 1
    return max(0.0, min(error.retry_after_s, float(longest)))


def retry_countdown(settings: Settings, error: ExecutionError, seed: str, attempt: int) -> float:
    """Seconds until the next attempt after `error` on attempt number `attempt`; the jitter is
    drawn from `seed` so a replay of the same orders retries at the same times."""
    countdown = unconfirmed_countdown(settings, error)
    if countdown is not None:
        return countdown
    return backoff_seconds(settings, attempt, random.Random(seed))
