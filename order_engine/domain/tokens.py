"""The token registry: symbols, SPL mints and decimals of the tokens the venues list.

Mints and decimals are the public mainnet values. SOL is the native coin; venues trade its
wrapped SPL form (wSOL, same mint), so orders on SOL are routed as wSOL and paid out as SOL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

WSOL_MINT = "So11111111111111111111111111111111111111112"
_BASE58_MINT = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


@dataclass(frozen=True)
class Token:
    symbol: str
    mint: str
    decimals: int

    @property
    def one(self) -> int:
        """Atoms per whole token."""
        return 10**self.decimals

    def to_atoms(self, amount: Decimal) -> int:
        """Exact conversion; the amount must already fit the token's decimals."""
        atoms = amount.scaleb(self.decimals)
        if atoms != atoms.to_integral_value():
            raise ValueError(f"{amount} has more than {self.decimals} decimals")
        return int(atoms)

    def from_atoms(self, atoms: int) -> Decimal:
        return Decimal(atoms).scaleb(-self.decimals)


def decimal_text(amount: Decimal) -> str:
    """A decimal as the API writes it: plain digits, never exponent notation ("0.000000001",
    not "1E-9"), since clients are told amounts are plain decimal strings."""
    return format(amount, "f")


TOKENS: tuple[Token, ...] = (
    Token("SOL", WSOL_MINT, 9),
    Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6),
    Token("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6),
    Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6),
    Token("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5),
    Token("RAY", "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", 6),
)

_BY_SYMBOL = {t.symbol: t for t in TOKENS} | {"WSOL": TOKENS[0]}
_BY_MINT = {t.mint: t for t in TOKENS}


class UnknownTokenError(ValueError):
    pass


def resolve(symbol_or_mint: str) -> Token:
    """Look a token up by symbol (case-insensitive; wSOL is SOL) or by base58 mint."""
    token = _BY_SYMBOL.get(symbol_or_mint.upper()) or _BY_MINT.get(symbol_or_mint)
    if token is not None:
        return token
    if _BASE58_MINT.match(symbol_or_mint):
        raise UnknownTokenError(f"mint {symbol_or_mint} is not listed by any venue")
    known = ", ".join(t.symbol for t in TOKENS)
    raise UnknownTokenError(f"unknown token {symbol_or_mint!r}; known symbols: {known}")
