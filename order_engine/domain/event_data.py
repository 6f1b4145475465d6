"""The `data` of the executor's lifecycle events, as README's API section documents them.

An event's envelope (`orderId`, `seq`, `status`, `at`, `attempt`) is `EventSchema`; these build
what goes inside it, camelCase for the API, amounts as decimal strings in token units (never
floats). The routing event's data is the route decision's own (`RouteDecision.as_event`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from order_engine.domain.amounts import Fill
from order_engine.domain.errors import ExecutionError
from order_engine.domain.time import format_timestamp
from order_engine.domain.tokens import Token, decimal_text


def building(
    *,
    dex: str,
    legs: list[dict[str, Any]],
    token_out: Token,
    quoted: int,
    minimum: int,
    slippage_bps: int,
    signature: str,
    blockhash: str,
    last_valid_block_height: int,
    expires_at: datetime,
    compute_unit_limit: int,
    compute_unit_price: int,
) -> dict[str, Any]:
    """The transaction signed for this attempt: its route, minimum, signature and expiry."""
    return {
        "dex": dex,
        "legs": legs,
        "quotedAmountOut": decimal_text(token_out.from_atoms(quoted)),
        "minAmountOut": decimal_text(token_out.from_atoms(minimum)),
        "slippageBps": slippage_bps,
        "txHash": signature,
        "blockhash": blockhash,
        "lastValidBlockHeight": last_valid_block_height,
        "blockhashExpiresAt": format_timestamp(expires_at),
        "computeUnitLimit": compute_unit_limit,
        "computeUnitPriceMicroLamports": compute_unit_price,
    }


def confirmed(
    *, dex: str, signature: str, slot: int, fill: Fill, token_out: Token, quoted: int
) -> dict[str, Any]:
    return {
        "dex": dex,
        "txHash": signature,
        "slot": slot,
        "amountIn": decimal_text(fill.amount_in),
        "amountOut": decimal_text(fill.amount_out),
        "executedPrice": format(fill.price.normalize(), "f"),
        "quotedAmountOut": decimal_text(token_out.from_atoms(quoted)),
        "realisedSlippageBps": str(fill.slippage_bps),
    }


def retry_scheduled(
    *,
    error: ExecutionError,
    countdown_s: float,
    next_attempt_at: datetime,
    attempts_left: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Back to `pending`: why, and when the next attempt runs."""
    return {
        "error": error.as_dict(),
        "retryInMs": round(countdown_s * 1000),
        "nextAttemptAt": format_timestamp(next_attempt_at),
        "attemptsLeft": attempts_left,
        **extra,
    }


def failed(*, final: ExecutionError, last: ExecutionError, attempts: int) -> dict[str, Any]:
    """One truth: the order and its `failed` event carry the same final code; the last
    attempt's own error is kept beside it when they differ."""
    error = final.as_dict()
    if final is not last:
        error["lastError"] = last.as_dict()
    return {"error": error, "attempts": attempts}


def rearmed(
    *, waiting_for: dict[str, Any], token_out: Token, quoted: int, required: int
) -> dict[str, Any]:
    """Back to waiting: the executor's quote fell below the order's price after its trigger."""
    return {
        "waitingFor": waiting_for,
        "rearmed": {
            "quotedAmountOut": decimal_text(token_out.from_atoms(quoted)),
            "requiredAmountOut": decimal_text(token_out.from_atoms(required)),
        },
    }
