"""Admin actions on the cluster (the node's `localnet_*` methods): move a reference price, list
a new token's pool, drain a pool, congest the cluster (a level of background demand, or an
expiry rate), set the searcher's rate. Each first does what is due by now
(`Landing.advance`), so it acts on the present, and persists its change before returning."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

from solders.pubkey import Pubkey

from order_engine.domain.tokens import TOKENS, Token
from order_engine.localnet import catalogue, pools
from order_engine.localnet.catalogue import METEORA, RAYDIUM
from order_engine.localnet.cluster.accounts import ServedAccounts
from order_engine.localnet.cluster.bank import Bank, PoolRecord
from order_engine.localnet.cluster.congestion import Congestion
from order_engine.localnet.cluster.faults import Faults
from order_engine.localnet.cluster.landing import Landing
from order_engine.localnet.cluster.searcher import Searcher


class Admin:
    """What an operator (or a test) may do to the simulated market."""

    def __init__(
        self,
        clock: Any,
        bank: Bank,
        landing: Landing,
        accounts: ServedAccounts,
        faults: Faults,
        congestion: Congestion,
        searcher: Searcher,
    ) -> None:
        self._clock = clock
        self._bank = bank
        self._landing = landing
        self._accounts = accounts
        self._faults = faults
        self._congestion = congestion
        self._searcher = searcher

    def find_pool(self, name: str) -> PoolRecord:
        """A pool by id (`raydium:SOL-USDC`) or by any address it serves."""
        record = self._bank.records.get(name) or self._bank.by_address.get(name)
        if record is None:
            raise KeyError(f"no pool {name!r}")
        return record

    def resolve_token(self, name: str) -> Token:
        tokens = self._bank.tokens
        upper = "SOL" if name.upper() == "WSOL" else name.upper()
        token = tokens.get(upper)
        if token is None:
            token = next((t for t in tokens.values() if t.mint == name), None)
        if token is None:
            raise KeyError(f"unknown token {name!r}")
        return token

    def move(self, base: str, quote: str, price: Decimal) -> list[PoolRecord]:
        """Reference price of one `base` in `quote` becomes `price` now; pools follow at once."""
        self._landing.advance()
        bank = self._bank
        base_token, quote_token = self.resolve_token(base), self.resolve_token(quote)
        if base_token.symbol == quote_token.symbol:
            raise ValueError("base and quote are the same token")
        now_ms = self._clock.now_ms()
        bank.market.set_price(base_token.symbol, quote_token.symbol, price, now_ms)
        bank.batch.meta["overrides"] = {s: str(v) for s, v in bank.market.overrides.items()}
        moved = []
        for record in bank.records.values():
            symbols = {record.spec.token_x.symbol, record.spec.token_y.symbol}
            if base_token.symbol in symbols:
                record.market_at_ms = min(record.market_at_ms, now_ms - 1)
                bank.catch_up(record, now_ms)
                moved.append(record)
        bank.flush()
        return moved

    def launch(
        self,
        mint: str,
        symbol: str,
        decimals: int,
        quote: str,
        liquidity: Decimal,
        price: Decimal,
        venue: str,
    ) -> PoolRecord:
        """List a pool for a token no pool held before: `liquidity` whole quote tokens deep,
        `price` quote per one token."""
        self._landing.advance()
        bank = self._bank
        Pubkey.from_string(mint)  # raises ValueError on a malformed address
        symbol = symbol.upper()
        if venue not in (RAYDIUM, METEORA):
            raise ValueError(f"venue must be {RAYDIUM} or {METEORA}")
        if any(t.mint == mint for t in bank.tokens.values()) or symbol in bank.tokens:
            raise ValueError(f"{symbol} ({mint}) is already listed")
        if not 0 <= decimals <= 18 or liquidity <= 0 or price <= 0:
            raise ValueError("decimals must be 0..18, liquidity and price positive")
        quote_token = self.resolve_token(quote)
        token = Token(symbol, mint, decimals)
        now_ms = self._clock.now_ms()
        usd = price * bank.market.reference_usd(quote_token.symbol, now_ms)
        spec = catalogue.launch_spec(venue, token, quote_token)
        mid = Fraction(price) * quote_token.one / token.one
        depth = int(Fraction(liquidity) * quote_token.one)
        state = catalogue.launched_state(spec, mid, depth)
        bank.tokens[symbol] = token
        bank.market.add_token(symbol, usd, now_ms)
        record = PoolRecord(spec, state, now_ms, seq=len(bank.records))
        bank.add_record(record)
        bank.dirty_pool(record)
        self._accounts.rebuild_static()
        self._persist_launched()
        self._accounts.serve(record)
        bank.flush()
        return record

    def _persist_launched(self) -> None:
        bank = self._bank
        launched = [[t.symbol, t.mint, t.decimals] for t in bank.tokens.values()]
        bank.batch.meta["launched_tokens"] = [
            row for row in launched if row[0] not in {t.symbol for t in TOKENS}
        ]
        bank.batch.meta["launched_usd"] = {
            s: str(v) for s, v in bank.market.base_usd.items() if s not in catalogue.REFERENCE_USD
        }
        bank.batch.meta["overrides"] = {s: str(v) for s, v in bank.market.overrides.items()}

    def drain(self, name: str) -> PoolRecord:
        self._landing.advance()
        record = self.find_pool(name)
        record.drained = True
        self._bank.set_pool(record, pools.drained(record.pool))
        self._bank.flush()
        return record

    def congest(self, expiry_rate: Decimal, seconds: int) -> tuple[int, int]:
        self._landing.advance()
        window = self._faults.congest(self._clock.now_ms(), expiry_rate, seconds)
        self._bank.flush()
        return window

    def congest_level(self, level: str, seconds: int) -> tuple[int, int]:
        """Background demand at `level` from now for `seconds`: (from, until) in ms."""
        self._landing.advance()
        window = self._congestion.set_level(level, self._clock.now_ms(), seconds)
        self._bank.flush()
        return window

    def set_mev_rate(self, rate: Decimal) -> None:
        if not Decimal(0) <= rate <= Decimal(1):
            raise ValueError("rate must be between 0 and 1")
        self._landing.advance()
        self._searcher.set_rate(rate)
        self._bank.flush()
