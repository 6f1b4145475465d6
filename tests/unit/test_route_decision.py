"""The routing decision on its own: quotes in, legs out, with no pool index and no chain."""

from __future__ import annotations

from decimal import Decimal

import pytest

from order_engine.chain.pools import METEORA, RAYDIUM, PoolRef, PoolView
from order_engine.domain.errors import NoLiquidity, NoRoute, QuoteUnavailable
from order_engine.domain.tokens import resolve
from order_engine.routing import decide, quote_pool
from order_engine.venues.math.cpmm import ConstantProductPool

SOL, USDC = resolve("SOL"), resolve("USDC")


def quote(venue: str, reserve_usdc: int, amount_in: int):
    ref = PoolRef(venue, f"{venue}-pool", SOL.mint, USDC.mint)
    pool = ConstantProductPool.raydium_cpmm(1_000 * SOL.one, reserve_usdc * USDC.one, 2_500)
    return quote_pool(PoolView(ref, 0.0, 1, cpmm=pool), SOL, USDC, amount_in, now_s=0)


def test_a_small_order_goes_whole_to_the_venue_that_pays_more():
    amount = SOL.one // 10
    low, high = quote(RAYDIUM, 150_000, amount), quote(METEORA, 151_000, amount)
    decision = decide(SOL, USDC, amount, [low, high], {})
    assert [leg.dex for leg in decision.legs] == [METEORA]
    assert decision.amount_out == high.amount_out
    assert decision.as_event()["decision"]["legs"][0]["percent"] == "100.00"


def test_a_large_order_splits_when_that_pays_more_than_either_venue():
    amount = 100 * SOL.one
    quotes = [quote(RAYDIUM, 150_000, amount), quote(METEORA, 150_000, amount)]
    decision = decide(SOL, USDC, amount, quotes, {}, split_threshold_bps=0)
    assert len(decision.legs) == 2
    assert sum(leg.amount_in for leg in decision.legs) == amount
    assert decision.amount_out > max(q.amount_out for q in quotes)


def test_failures_are_reported_beside_the_quotes():
    amount = SOL.one
    failed = NoLiquidity("meteora: empty")
    decision = decide(SOL, USDC, amount, [quote(RAYDIUM, 150_000, amount)], {METEORA: failed})
    assert decision.failures == {METEORA: failed.as_dict()}
    assert decision.dex == RAYDIUM
    assert Decimal(decision.as_event()["decision"]["amountOut"]) > 0


@pytest.mark.parametrize(
    ("errors", "raised"),
    [
        ({}, NoRoute),
        ({RAYDIUM: NoLiquidity("empty")}, NoLiquidity),
        ({RAYDIUM: NoLiquidity("empty"), METEORA: QuoteUnavailable("down")}, QuoteUnavailable),
    ],
)
def test_no_quote_raises_what_best_explains_it(errors, raised):
    with pytest.raises(raised):
        decide(SOL, USDC, SOL.one, [], errors)
