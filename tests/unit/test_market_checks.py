"""What intake asks the chain about an order, with the chain's answers stubbed: which fields
are asked about, and what each answer refuses."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from order_engine.config import Settings
from order_engine.domain.tokens import resolve
from order_engine.schemas.order import UnlistedMint
from order_engine.services import market
from order_engine.services.market import market_problems

SOL, USDC, JUP = resolve("SOL"), resolve("USDC"), resolve("JUP")
NEW_MINT = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
# Passed through to the stubbed chain facts untouched; the size check reads its one setting.
SETTINGS: Any = SimpleNamespace(mev_protection=True)


class Chain:
    """The chain facts `market` reads, answering as told and recording what was asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listed, self.has_pool, self.fillable = True, False, 10**12  # 1,000 SOL
        self.venues: list[str] | None = ["raydium", "meteora"]
        self.asked: list[str] = []
        monkeypatch.setattr(market, "pair_is_listed", self._pair_is_listed)
        monkeypatch.setattr(market, "mint_has_pool", self._mint_has_pool)
        monkeypatch.setattr(market, "max_fillable_atoms", self._max_fillable_atoms)
        monkeypatch.setattr(market, "pair_venues", self._pair_venues)

    def _pair_is_listed(self, settings: Settings, mint_in: str, mint_out: str) -> bool:
        assert settings is SETTINGS
        self.asked.append("pair")
        return self.listed

    def _mint_has_pool(self, settings: Settings, mint: str) -> bool:
        self.asked.append("mint")
        return self.has_pool

    def _pair_venues(self, settings: Settings, mint_in: str, mint_out: str) -> list[str] | None:
        self.asked.append("venues")
        return self.venues

    def _max_fillable_atoms(self, settings: Settings, mint_in: str, mint_out: str) -> int | None:
        self.asked.append("fillable")
        return self.fillable


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Chain:
    return Chain(monkeypatch)


def order(**fields: Any) -> dict[str, Any]:
    return {"type": "market", "tokenIn": SOL, "tokenOut": USDC, "amount": Decimal("1.5")} | fields


def test_a_listed_pair_and_a_fillable_amount_pass(chain):
    assert market_problems(SETTINGS, order()) == {}
    assert chain.asked == ["pair", "venues", "fillable"]


def test_a_pair_no_venue_lists_is_refused_on_token_out_and_its_amount_not_asked(chain):
    chain.listed = False
    problems = market_problems(SETTINGS, order(tokenIn=JUP, tokenOut=resolve("RAY")))
    assert problems == {"tokenOut": ["No venue lists a JUP/RAY pool."]}
    assert chain.asked == ["pair"]


def test_more_than_the_pools_could_ever_fill_is_refused_naming_their_worth(chain):
    problems = market_problems(SETTINGS, order(amount=Decimal("1000.5")))
    assert problems["amount"][0].startswith("Exceeds what the SOL/USDC pools could ever fill")
    assert "about 1000.0000 SOL" in problems["amount"][0]


def test_without_the_chain_a_static_bound_stands_in(chain):
    chain.fillable = None
    assert market_problems(SETTINGS, order(amount=Decimal("10000000"))) == {}
    problems = market_problems(SETTINGS, order(amount=Decimal("10000001")))
    assert problems == {"amount": ["Exceeds the largest SOL order accepted (10000000 SOL)."]}


def test_a_sniper_whose_mint_already_trades_is_a_market_orders_business(chain):
    target = UnlistedMint(NEW_MINT, NEW_MINT, 0)
    assert market_problems(SETTINGS, order(type="sniper", tokenOut=target)) == {}
    chain.has_pool = True
    problems = market_problems(SETTINGS, order(type="sniper", tokenOut=target))
    assert problems == {"tokenOut": [f"Mint {NEW_MINT} already has a pool; use a market order."]}
    assert "pair" not in chain.asked


@pytest.mark.parametrize("invalid", ["tokenIn", "tokenOut"])
def test_nothing_is_asked_of_a_pair_whose_shape_is_refused(chain, invalid):
    assert market_problems(SETTINGS, order(), {invalid}) == {}
    assert chain.asked == []


def test_an_amount_whose_shape_is_refused_is_not_checked_against_the_pools(chain):
    chain.fillable = 0
    assert market_problems(SETTINGS, order(), {"amount", "slippageBps"}) == {}
    assert chain.asked == ["pair", "venues"]


def test_fields_missing_from_a_refused_body_are_not_asked_about(chain):
    assert market_problems(SETTINGS, {"type": "market", "tokenIn": SOL}, {"tokenOut"}) == {}
    assert market_problems(SETTINGS, order(amount=None)) == {}
    assert chain.asked == ["pair", "venues"]
