"""The simulated market, venues and chain are deterministic per seed, end to end."""

from decimal import Decimal

import pytest
from sqlalchemy import create_engine

from order_engine.config import Settings
from order_engine.localnet.config import LocalnetSettings
from order_engine.ops import migrate
from order_engine.tools.replay import ReplayOrder, mixed_orders, replay
from tests.support.servers import recreate_database

pytestmark = pytest.mark.integration


def run_replay(servers, test_settings, name: str, orders, seed: str = "7"):
    url = recreate_database(servers, name)
    migrate.upgrade(url)
    settings = Settings.from_env({**test_settings, "DATABASE_URL": url, "DEX_SEED": seed})
    localnet = LocalnetSettings.from_env(
        {"DEX_SEED": seed, "DEX_SWAP_LATENCY_MS": "2000-3000", "DEX_EXPIRY_RATE": "0.05"}
    )
    engine = create_engine(url)
    try:
        return replay(engine, settings, localnet, orders)
    finally:
        engine.dispose()


def without_wall_clock(streams):
    return [[{k: v for k, v in event.items() if k != "at"} for event in s] for s in streams]


def test_same_seed_gives_the_same_event_streams(servers, test_settings):
    orders = list(mixed_orders(7, 16))
    first = run_replay(servers, test_settings, "oe_replay_a", orders)
    second = run_replay(servers, test_settings, "oe_replay_b", orders)
    assert without_wall_clock(first) == without_wall_clock(second)
    assert all(s[-1]["status"] in {"confirmed", "failed"} for s in first)


def test_another_seed_gives_another_market(servers, test_settings):
    orders = [ReplayOrder("SOL", "USDC", Decimal("2"))] * 3
    seven = run_replay(servers, test_settings, "oe_replay_c", orders, seed="7")
    eight = run_replay(servers, test_settings, "oe_replay_d", orders, seed="8")
    prices = [
        [e["data"]["executedPrice"] for e in s if e["status"] == "confirmed"]
        for s in (seven[0], eight[0])
    ]
    assert prices[0] != prices[1]


def test_large_orders_split_across_venues_and_never_do_worse_than_one(servers, test_settings):
    # Deep enough to walk far up Meteora's bins, where Raydium's curve becomes competitive.
    whale = [ReplayOrder("USDC", "SOL", Decimal("3000000"), slippage_bps=500)]
    (stream,) = run_replay(servers, test_settings, "oe_replay_e", whale)
    routing = next(e for e in stream if e["status"] == "routing")["data"]
    legs = routing["decision"]["legs"]
    assert {leg["dex"] for leg in legs} == {"meteora", "raydium"}
    assert stream[-1]["status"] == "confirmed"
    total = sum(Decimal(leg["amountOut"]) for leg in legs)
    best_single = max(Decimal(q["amountOut"]) for q in routing["quotes"])
    assert total > best_single
    assert "split" in routing["decision"]["reason"]
