"""What the chain says of an order whose shape is valid: is its pair listed, could the pair's
pools ever fill its amount, has a sniper's mint already got a pool?

The schema (`schemas/order.py`) checks an order's shape without I/O; intake then asks these,
with the settings it is given, of the fields the schema found valid, and answers one 422 that
names every invalid field of either kind. The answers come from this process's cached chain
facts (`services/resources.py`), so a submission costs no RPC of its own while they are fresh.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from order_engine.config import Settings
from order_engine.domain.tokens import Token
from order_engine.models import OrderType
from order_engine.services.resources import (
    STATIC_MAX_AMOUNT,
    max_fillable_atoms,
    mint_has_pool,
    pair_is_listed,
)


def market_problems(
    settings: Settings, order: Mapping[str, Any], invalid: Collection[str] = ()
) -> dict[str, list[str]]:
    """`tokenOut` and `amount` problems of an order body the schema loaded, as field ->
    [reasons]. Fields named in `invalid` (their shape is refused already) and those they
    depend on are not asked about: the amount is checked against a pair only once the pair
    itself is good."""
    if {"tokenIn", "tokenOut"} & set(invalid):
        return {}
    token_in, token_out = order.get("tokenIn"), order.get("tokenOut")
    if token_in is None or token_out is None:
        return {}
    problem = _pair_problem(settings, order.get("type"), token_in, token_out)
    if problem:
        return {"tokenOut": [problem]}
    amount = order.get("amount")
    if amount is None or "amount" in invalid:
        return {}
    problem = _fillable_problem(settings, amount, token_in, token_out)
    return {"amount": [problem]} if problem else {}


def _pair_problem(
    settings: Settings, order_type: str | None, token_in: Token, token_out: Token
) -> str | None:
    if order_type == OrderType.SNIPER.value:
        # A sniper waits for a mint that has no pool yet; once it trades, it is a market
        # order's business.
        if mint_has_pool(settings, token_out.mint):
            return f"Mint {token_out.mint} already has a pool; use a market order."
        return None
    if not pair_is_listed(settings, token_in.mint, token_out.mint):
        return f"No venue lists a {token_in.symbol}/{token_out.symbol} pool."
    return None


def _fillable_problem(
    settings: Settings, amount: Decimal, token_in: Token, token_out: Token
) -> str | None:
    """Refuse amounts no pool of the pair could ever fill (or, when the chain cannot be
    asked, beyond a static bound): an order for billions of SOL is a mistake, not a trade."""
    atoms = max_fillable_atoms(settings, token_in.mint, token_out.mint)
    if atoms is not None:
        most = token_in.from_atoms(atoms)
        if amount > most:
            return (
                f"Exceeds what the {token_in.symbol}/{token_out.symbol} pools could ever fill: "
                f"their whole {token_out.symbol} reserves are worth about "
                f"{most:.{min(token_in.decimals, 4)}f} {token_in.symbol}."
            )
        return None
    static = STATIC_MAX_AMOUNT.get(token_in.symbol)
    if static is not None and amount > static:
        return f"Exceeds the largest {token_in.symbol} order accepted ({static} {token_in.symbol})."
    return None
