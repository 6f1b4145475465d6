"""Tokens the registry does not list: a sniper buys a mint that had no pool when it was
ordered, so its decimals come from the chain — the SPL Mint account (82 bytes; decimals is
the byte at offset 44: mint_authority COption<Pubkey> 36, supply u64 8). A mint's decimals
never change, so each process reads a mint once.
"""

from __future__ import annotations

import threading

from order_engine.chain.client import Chain
from order_engine.domain.errors import NoRoute
from order_engine.domain.tokens import Token, UnknownTokenError, resolve

MINT_SIZE = 82
DECIMALS_OFFSET = 44

_decimals: dict[str, int] = {}
_lock = threading.Lock()


def decode_mint_decimals(data: bytes) -> int:
    if len(data) < MINT_SIZE:
        raise ValueError(f"not an SPL mint account ({len(data)} bytes)")
    return data[DECIMALS_OFFSET]


def token_for(chain: Chain, symbol_or_mint: str) -> Token:
    """The registry's token, or an unlisted mint with its decimals read from the chain
    (its symbol is the mint itself). NoRoute when the mint account does not exist."""
    try:
        return resolve(symbol_or_mint)
    except UnknownTokenError:
        mint = symbol_or_mint
    decimals = _decimals.get(mint)
    if decimals is None:
        _, (data,) = chain.multiple_accounts([mint])
        if data is None:
            raise NoRoute(f"mint {mint} does not exist on the chain") from None
        decimals = decode_mint_decimals(data)
        with _lock:
            _decimals[mint] = decimals
    return Token(mint, mint, decimals)


def symbol_of(mint: str) -> str:
    """How orders name a token: the registry's symbol, or the mint itself when unlisted."""
    try:
        return resolve(mint).symbol
    except UnknownTokenError:
        return mint
