"""Failures of venues and the chain, each with a stable code and a retryable flag.

Codes follow the taxonomy in docs/venues.md: infrastructure and landing failures are
retryable (a fresh attempt with a fresh blockhash can succeed); program failures caused by the
order itself or the market (slippage, no route, no liquidity) are not, since retrying the same
order would fail the same way or fill worse than the client allowed.
"""

from __future__ import annotations


class ExecutionError(Exception):
    code = "EXECUTION_ERROR"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class RpcUnavailable(ExecutionError):
    code, retryable = "RPC_UNAVAILABLE", True


class QuoteUnavailable(ExecutionError):
    code, retryable = "QUOTE_UNAVAILABLE", True


class BlockhashExpired(ExecutionError):
    code, retryable = "BLOCKHASH_EXPIRED", True


class TransactionDropped(ExecutionError):
    code, retryable = "TRANSACTION_DROPPED", True


class ExecutorLost(ExecutionError):
    """The worker running the attempt died before its transaction reached the chain."""

    code, retryable = "EXECUTOR_LOST", True


class SlippageExceeded(ExecutionError):
    code, retryable = "SLIPPAGE_EXCEEDED", False


class NoRoute(ExecutionError):
    code, retryable = "NO_ROUTE", False


class NoLiquidity(ExecutionError):
    code, retryable = "NO_LIQUIDITY", False


class AmountTooSmall(ExecutionError):
    code, retryable = "AMOUNT_TOO_SMALL", False


class TransactionTooLarge(ExecutionError):
    """The order's swap transaction exceeds Solana's 1232-byte packet limit (PACKET_DATA_SIZE,
    anza-xyz/solana-sdk `packet/src/lib.rs`): the same order builds it again however often it
    is tried, so it fails at once; intake refuses an order whose transaction could not fit."""

    code, retryable = "TRANSACTION_TOO_LARGE", False


class SwapNotBuildable(ExecutionError):
    """The route's legs make no valid swap instruction (the builder refused them): the same
    order and pools refuse it again on every attempt, so the order fails at once rather than
    crash its worker at each delivery."""

    code, retryable = "SWAP_NOT_BUILDABLE", False


class AttemptsExhausted(ExecutionError):
    code, retryable = "ATTEMPTS_EXHAUSTED", False


class DeliveriesExhausted(ExecutionError):
    """The order's task died with its worker too many times (a poison order)."""

    code, retryable = "DELIVERIES_EXHAUSTED", False


class TransactionUnconfirmed(ExecutionError):
    """The chain has not confirmed the transaction within the wait; it may still land. The
    next attempt is scheduled for when its blockhash has expired (`retry_after_s`), so it finds
    the transaction landed, or gone for good, and never sends a second swap beside it."""

    code, retryable = "TRANSACTION_UNCONFIRMED", True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
