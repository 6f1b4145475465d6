"""The router against an exhaustive oracle, on pool states read from an in-process localnet."""

from __future__ import annotations

import pytest

from order_engine.chain.pools import PoolIndex
from order_engine.domain.tokens import resolve
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.routing import Router, output_function
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain


@pytest.fixture(scope="module")
def router_on_localnet():
    clock = VirtualClock(REPLAY_START_MS)
    node = Localnet.in_memory(LocalnetSettings(seed=7), clock)
    chain = InProcessChain(node, clock)
    pools = PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)
    now_s = REPLAY_START_MS // 1000
    return Router(pools, split_threshold_bps=0, now_s=lambda: now_s), pools, now_s


@pytest.mark.parametrize("usdc", [50, 20_000, 1_500_000, 3_000_000])
def test_router_regret_against_an_exhaustive_oracle_is_zero(router_on_localnet, usdc):
    router, pools, now_s = router_on_localnet
    usdc_token, sol = resolve("USDC"), resolve("SOL")
    amount = usdc * usdc_token.one
    decision = router.route(usdc_token, sol, amount)
    views = pools.views(pools.pools_for(usdc_token.mint, sol.mint))
    f, g = (output_function(view, False, now_s) for view in views)
    steps = 2_000
    oracle = max(
        (f(a) or 0) + (g(amount - a) or 0) for a in range(0, amount + 1, max(1, amount // steps))
    )
    # The oracle samples a grid; the router searches every atom near the optimum.
    assert decision.amount_out >= oracle
    assert decision.amount_out >= max(q.amount_out for q in decision.quotes)
