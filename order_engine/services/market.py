"""What the chain says of an order whose shape is valid: is its pair listed, could the pair's
pools ever fill its amount, has a sniper's mint already got a pool, could its swap transaction
ever fit in a packet?

The schema (`schemas/order.py`) checks an order's shape without I/O; intake then asks these,
with the settings it is given, of the fields the schema found valid, and answers one 422 that
names every invalid field of either kind. The answers come from this process's cached chain
facts (`services/resources.py`), so a submission costs no RPC of its own while they are fresh.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from order_engine.chain.programs import MAX_TRANSACTION_SIZE
from order_engine.chain.tx import METEORA
from order_engine.config import Settings
from order_engine.domain.tokens import Token
from order_engine.infra.process import PROCESS
from order_engine.models import OrderType
from order_engine.services.execution.swap_transaction import (
    MAX_LEGS,
    ORDER_ID_MEMO_BYTES,
    worst_case_size,
)
from order_engine.services.resources import (
    STATIC_MAX_AMOUNT,
    max_fillable_atoms,
    mint_has_pool,
    pair_is_listed,
    pair_venues,
)

# Worst-case sizes kept per pair, venues and memo length (a sniper's mints are the client's
# choice: the cache is emptied when it reaches this many).
SIZE_CACHE_ENTRIES = 4096


def market_problems(
    settings: Settings, order: Mapping[str, Any], invalid: Collection[str] = ()
) -> dict[str, list[str]]:
    """`tokenOut`, `amount` and `clientOrderId` problems of an order body the schema loaded,
    as field -> [reasons]. Fields named in `invalid` (their shape is refused already) and those they
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
    problems = {} if "clientOrderId" in invalid else size_problems(settings, order)
    amount = order.get("amount")
    if amount is None or "amount" in invalid:
        return problems
    problem = _fillable_problem(settings, amount, token_in, token_out)
    return {"amount": [problem], **problems} if problem else problems


def size_problems(settings: Settings, order: Mapping[str, Any]) -> dict[str, list[str]]:
    """Refuse an order whose swap transaction could exceed Solana's 1232-byte limit: the
    largest one it could be built as (`worst_case_size`: two legs, each the largest kind, with
    its memo) is measured from the builder's own instructions. Its memo is the client's id,
    or the order's own (a TWAP's slices always carry theirs); when a shorter client id would
    fit, the problem is that id's, else the pair's."""
    token_in, token_out = order["tokenIn"], order["tokenOut"]
    client_id = order.get("clientOrderId") if order.get("type") != OrderType.TWAP.value else None
    given = len(client_id.encode("utf-8")) if client_id else 0
    memo_bytes = max(given, ORDER_ID_MEMO_BYTES)
    sniper = order.get("type") == OrderType.SNIPER.value  # its pair has no pool yet
    venues = worst_venues(None if sniper else pair_venues(settings, token_in.mint, token_out.mint))
    protected = order.get("mevProtection")
    tipped = settings.mev_protection if protected is None else bool(protected)
    size = _worst_case_size(token_in, token_out, venues, memo_bytes, tipped)
    over = size - MAX_TRANSACTION_SIZE
    if over <= 0:
        return {}
    fits = memo_bytes - over
    # A memo under 128 bytes has a one-byte length prefix where a longer one has two: the
    # longest that fits may be a byte or so longer than the arithmetic says.
    while _worst_case_size(token_in, token_out, venues, fits + 1, tipped) <= MAX_TRANSACTION_SIZE:
        fits += 1
    if client_id and fits >= ORDER_ID_MEMO_BYTES:
        return {
            "clientOrderId": [
                f"Goes on chain as the swap's memo ({given} bytes of UTF-8), which makes this "
                f"order's transaction up to {size} bytes, over Solana's {MAX_TRANSACTION_SIZE}-"
                f"byte limit: shorten it to at most {fits} bytes."
            ]
        }
    return {
        "tokenOut": [
            f"A {token_in.symbol}/{token_out.symbol} swap transaction could be {size} bytes, over "
            f"Solana's {MAX_TRANSACTION_SIZE}-byte limit: no order of this pair can be sent."
        ]
    }


def worst_venues(known: list[str] | None) -> tuple[str, ...]:
    """The venues of the largest route an order may take: MAX_LEGS legs, the pair's pools'
    venues first, DLMM (the larger leg) first among them, and DLMM for any leg beyond the
    pools known now (one may be launched before the order runs, or the chain is not
    answering)."""
    ordered = sorted(known or (), key=lambda venue: venue != METEORA)
    return tuple((ordered + [METEORA] * MAX_LEGS)[:MAX_LEGS])


def _worst_case_size(
    token_in: Token, token_out: Token, venues: tuple[str, ...], memo: int, tipped: bool
) -> int:
    """`worst_case_size`, kept per process: about 0.07 ms to compute, asked of every order."""
    cache: dict[tuple[Any, ...], int] = PROCESS.get("swap_sizes", "worst case", dict)
    key = (token_in.mint, token_out.mint, venues, memo, tipped)
    size = cache.get(key)
    if size is None:
        if len(cache) >= SIZE_CACHE_ENTRIES:
            cache.clear()
        size = cache[key] = worst_case_size(token_in, token_out, venues, memo, tipped)
    return size


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
