"""Exact, pure swap math for the simulated venues.

Every amount is an integer number of atoms (lamports, USDC micro-units, ...) and every price or
ratio is an `int`, a Q64.64 `int` or a `fractions.Fraction`: no binary floats anywhere, so a quote
is reproducible bit for bit. Rounding always goes against the trader, as in the on-chain programs.

Modules:

* `cpmm`  -- Raydium constant product (CPMM and legacy AMM v4).
* `dlmm`  -- Meteora DLMM (constant-sum bins, dynamic fee).
* `split` -- best split of one order between two venues.

This module holds what they share: the error hierarchy and integer rounding helpers. Each error
carries a stable `code` that the execution layer maps onto its failure reasons (docs/venues.md,
"Failure taxonomy"), so callers never match on message text.
"""

from __future__ import annotations


class VenueMathError(Exception):
    """A swap the venue's program would refuse. `code` is stable; the message is for people."""

    code = "VENUE_MATH_ERROR"


class InvalidAmount(VenueMathError):
    """The requested amount is not a positive integer number of atoms."""

    code = "INVALID_AMOUNT"


class ZeroTradingTokens(VenueMathError):
    """The trade is too small to move a single atom (Raydium CPMM error 6006)."""

    code = "AMOUNT_TOO_SMALL"


class InsufficientLiquidity(VenueMathError):
    """The pool cannot supply the output (CPMM 6012 `InsufficientVault`, DLMM bin walk ran out)."""

    code = "NO_LIQUIDITY"


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounded up, for non-negative numerator and positive denominator."""
    return -(-numerator // denominator)


def require_positive_atoms(amount: int, name: str) -> None:
    """Raise `InvalidAmount` unless `amount` is a positive `int` (bools and floats refused)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(f"{name} must be a positive integer number of atoms, got {amount!r}")
