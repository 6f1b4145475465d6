"""The trigger engine's pure core: required outputs, price bounds and the trigger decision."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from order_engine.chain.pools import RAYDIUM, PoolIndex, PoolRef, PoolView
from order_engine.domain.errors import ExecutionError
from order_engine.domain.tokens import resolve
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.routing import Router, quote_pool
from order_engine.services.triggers import (
    TriggerService,
    meets,
    pool_price_bound,
    required_out_atoms,
    sniper_trigger_price,
    ui_price_bound,
    waiting_for,
)
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain
from order_engine.venues.math.cpmm import ConstantProductPool

SOL, USDC = resolve("SOL"), resolve("USDC")
prices = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6, allow_nan=False
)


def cpmm_view(reserve_sol: int, reserve_usdc: int, fee: int) -> PoolView:
    ref = PoolRef(RAYDIUM, "pool", SOL.mint, USDC.mint)
    pool = ConstantProductPool.raydium_cpmm(reserve_sol, reserve_usdc, fee)
    return PoolView(ref, 0.0, 1, cpmm=pool)


def test_required_output_rounds_up_to_the_next_atom():
    assert required_out_atoms(Decimal("1.5"), Decimal("250.0000001"), None, 6) == 375_000_001
    assert required_out_atoms(Decimal("2"), Decimal("250"), None, 6) == 500_000_000
    # A sniper paying at most 0.5 SOL per token buys at least amount / 0.5 tokens.
    assert required_out_atoms(Decimal("1"), None, Decimal("0.3"), 6) == 3_333_334
    assert required_out_atoms(Decimal("1"), None, None, 6) == 0


@settings(max_examples=300, deadline=None)
@given(
    reserve_sol=st.integers(10**9, 10**16),
    reserve_usdc=st.integers(10**6, 10**14),
    fee=st.sampled_from([100, 2_500, 10_000]),
    amount_sol=st.integers(1, 10**13),
    sell_sol=st.booleans(),
    limit=prices,
)
def test_a_limit_triggers_exactly_when_the_quote_meets_it_and_the_index_never_misses_it(
    reserve_sol, reserve_usdc, fee, amount_sol, sell_sol, limit
):
    view = cpmm_view(reserve_sol, reserve_usdc, fee)
    token_in, token_out = (SOL, USDC) if sell_sol else (USDC, SOL)
    amount_atoms = amount_sol if sell_sol else max(1, amount_sol // 1000)
    try:
        quote = quote_pool(view, token_in, token_out, amount_atoms, 0).amount_out
    except ExecutionError:
        assume(False)
    amount = token_in.from_atoms(amount_atoms)
    required = required_out_atoms(amount, limit, None, token_out.decimals)
    exact = Fraction(amount) * Fraction(limit) * token_out.one
    # Exactly when the quote pays amount × limitPrice: never before, never later.
    assert meets(quote, required) == (quote >= exact)
    bound = ui_price_bound(
        pool_price_bound(view, token_in.mint, token_out.mint), token_in, token_out
    )
    # Every quote's average price is at most the pair's bound, so the index's range query
    # (trigger_price <= bound) holds every order that can trigger.
    assert Fraction(quote, token_out.one) / Fraction(amount) <= Fraction(bound)
    if meets(quote, required):
        assert limit <= bound


@settings(max_examples=200, deadline=None)
@given(amount=prices, max_price=prices, quote=st.integers(0, 10**15))
def test_a_sniper_never_pays_more_than_its_maximum_price(amount, max_price, quote):
    required = required_out_atoms(amount, None, max_price, 6)
    if meets(quote, required) and quote > 0:
        assert Fraction(amount) / Fraction(quote, 10**6) <= Fraction(max_price)
    assert Fraction(sniper_trigger_price(max_price)) <= 1 / Fraction(max_price)


def test_waiting_for_names_the_limit_or_the_awaited_mint():
    assert waiting_for("limit", "USDC", Decimal("250.50"), None) == {"limitPrice": "250.5"}
    assert waiting_for("sniper", "Mint111", None, Decimal("0.01")) == {
        "pool": {"mint": "Mint111"},
        "maxPrice": "0.01",
    }


@pytest.fixture(scope="module")
def localnet_router():
    clock = VirtualClock(REPLAY_START_MS)
    node = Localnet.in_memory(LocalnetSettings(seed=7), clock)
    chain = InProcessChain(node, clock)
    pools = PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)
    now_s = REPLAY_START_MS // 1000
    return Router(pools, now_s=lambda: now_s), chain


@pytest.mark.parametrize("amount_usdc", ["1", "250", "40000", "900000"])
def test_pair_bounds_cover_every_venue_quote_and_the_split(localnet_router, amount_usdc):
    router, chain = localnet_router
    service = TriggerService(None, router, chain, None, None)  # type: ignore[arg-type]
    bounds, tokens = service.pair_bounds()
    by_pair = {(b.token_in, b.token_out): b.best_price for b in bounds}
    assert ("SOL", "USDC") in by_pair
    assert ("USDC", "SOL") in by_pair
    for pair, amount in ((("USDC", "SOL"), amount_usdc), (("SOL", "USDC"), "3")):
        token_in, token_out = tokens[pair]
        decision = router.route(token_in, token_out, token_in.to_atoms(Decimal(amount)))
        for out in [decision.amount_out, *(q.amount_out for q in decision.quotes)]:
            price = Fraction(out, token_out.one) / Fraction(Decimal(amount))
            assert price <= Fraction(by_pair[pair])
