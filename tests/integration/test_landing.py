"""Landing on the real localnet process, end to end (gunicorn API, Celery worker, PostgreSQL,
Redis): what each order reports it paid equals what `getTransaction` says, its compute limit
fits what it consumed, protected orders go to the block engine with a tip and are never
sandwiched, a failed bundle is retried at once, the fee oracle reads a hot pool's market at
`high` and follows a chain that turns congested at once, and bad landing fields are refused with
nothing created."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from order_engine.chain.client import RpcChain
from order_engine.chain.fees import FeeOracle, percentile
from order_engine.localnet.execution import FAUCET_LAMPORTS
from order_engine.ops.launch import rpc
from tests.support.clients import order_body, request
from tests.support.watchers import wait_until
from tests.unit.localnet.support import over_http, pool_address

pytestmark = [pytest.mark.integration, pytest.mark.broker]

BIG_SOL = "10000"  # splits across both venues: its Raydium leg pays a sandwich


def submit(stack, **overrides: Any) -> str:
    response = request("POST", f"{stack.base_url}/api/orders/execute", order_body(**overrides))
    assert response.status == 202, response.body
    return response.body["orderId"]


def finished(stack, order_id: str, timeout_s: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        order = request("GET", f"{stack.base_url}/api/orders/{order_id}").body
        return order if order["status"] in {"confirmed", "failed"} else None

    return wait_until(done, timeout_s, f"order {order_id} to finish")


def on_chain(stack, signature: str) -> dict[str, Any]:
    config = {"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": "confirmed"}
    result = rpc(stack.settings["SOLANA_RPC_URL"], "getTransaction", [signature, config])
    assert isinstance(result, dict), result
    return result


def tip_accounts(stack) -> set[str]:
    url = stack.settings["SOLANA_RPC_URL"] + "/api/v1/bundles"
    return set(over_http(url)("getTipAccounts"))


def tips_in(tx: dict[str, Any], tips: set[str]) -> list[int]:
    """What the transaction moved to the block engine's tip accounts (an account the faucet
    funds on first use shows its funding in the same balances)."""
    meta, keys = tx["meta"], tx["transaction"]["message"]["accountKeys"]
    moved = []
    for index, key in enumerate(keys):
        if key in tips:
            pre, post = meta["preBalances"][index], meta["postBalances"][index]
            moved.append(post - pre - (FAUCET_LAMPORTS if pre == 0 else 0))
    return moved


def assert_reported_as_the_chain_says(stack, order: dict[str, Any]) -> None:
    fees, landing = order["fees"], order["landing"]
    tx = on_chain(stack, order["txHash"])
    meta = tx["meta"]
    assert fees["baseLamports"] == 5_000
    assert fees["priorityLamports"] == math.ceil(
        fees["computeUnitLimit"] * fees["microLamportsPerCu"] / 1_000_000
    )
    assert fees["baseLamports"] + fees["priorityLamports"] == meta["fee"]
    assert fees["computeUnitsConsumed"] == meta["computeUnitsConsumed"]
    assert landing["landedSlot"] == tx["slot"]
    assert landing["sentSlot"] <= landing["landedSlot"]
    # The limit fits: never under what it consumed, at most 1.3× of it.
    assert meta["computeUnitsConsumed"] <= fees["computeUnitLimit"]
    assert fees["computeUnitLimit"] <= 1.3 * meta["computeUnitsConsumed"]
    tipped = tips_in(tx, tip_accounts(stack))
    if landing["via"] == "bundle":
        assert fees["tipLamports"] >= 1_000
        assert tipped == [fees["tipLamports"]]  # a transfer, not a fee
    else:
        assert fees["tipLamports"] == 0
        assert tipped == []
    confirmed = order["events"][-1]["data"]
    assert (confirmed["fees"], confirmed["landing"]) == (fees, landing)


def test_each_order_reports_what_get_transaction_says_and_its_limit_fits(live_stack):
    bodies = [
        {},  # protected by default, auto
        {"mevProtection": False},
        {"priorityFee": {"microLamportsPerCu": 25_000}, "maxFeeLamports": 50_000},
        {"tokenIn": "USDC", "tokenOut": "SOL", "amount": "75"},
        # Deep enough to walk Meteora's bins and split across both venues.
        {"tokenIn": "USDC", "tokenOut": "SOL", "amount": "300000", "slippageBps": 500},
        {"tokenIn": "SOL", "tokenOut": "USDT", "amount": "3", "mevProtection": False},
    ]
    order_ids = [submit(live_stack, **body) for body in bodies]
    orders = [finished(live_stack, order_id) for order_id in order_ids]
    for body, order in zip(bodies, orders, strict=True):
        assert order["status"] == "confirmed", (body, order, live_stack.logs())
        assert_reported_as_the_chain_says(live_stack, order)
        expected_via = "rpc" if body.get("mevProtection") is False else "bundle"
        assert order["landing"]["via"] == expected_via
        assert order["landing"]["versions"] == 1
    assert orders[2]["fees"]["microLamportsPerCu"] == 25_000
    assert orders[2]["priorityFee"] == {"microLamportsPerCu": 25_000}
    assert orders[0]["priorityFee"] == "auto"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priorityFee", "fastest"),
        ("priorityFee", {"microLamportsPerCu": -5}),
        ("priorityFee", {"microLamportsPerCu": "100"}),
        ("priorityFee", {"lamports": 100}),
        ("maxFeeLamports", -1),
        ("maxFeeLamports", 1.5),
        ("maxFeeLamports", 500),  # protected: no room for the least tip
        ("mevProtection", "false"),
        ("mevProtection", 0),
    ],
)
def test_a_bad_landing_field_is_refused_by_name_and_creates_nothing(live_stack, field, value):
    key = f"bad-landing-{uuid.uuid4()}"
    response = live_stack.post_order(order_body(**{field: value}), key)
    assert response.status == 422, response.body
    assert list(response.body["errors"]) == [field], response.body
    assert live_stack.order_count(idempotency_key=key) == 0


@pytest.fixture
def searcher(live_stack) -> Iterator[Any]:
    call = over_http(live_stack.settings["SOLANA_RPC_URL"])
    call("localnet_mev", {"rate": "1"})
    try:
        yield call
    finally:
        call("localnet_mev", {"rate": "0"})


def test_protected_orders_are_never_sandwiched_public_ones_can_be(live_stack, searcher):
    """The searcher looks at every public swap (rate 1) and sandwiches those whose allowance
    pays for it; it never sees a bundle. One at a time, so that no order's quote is another's
    stale one."""
    loose = {"amount": BIG_SOL, "slippageBps": 1000}
    protected = [finished(live_stack, submit(live_stack, **loose)) for _ in range(2)]
    public = []
    for _ in range(3):  # a sandwich needs the round trip to pay: the first usually does
        public.append(finished(live_stack, submit(live_stack, mevProtection=False, **loose)))
        victims = {entry["victim"] for entry in searcher("localnet_mevReport", {})}
        if public[-1]["txHash"] in victims:
            break
    orders = protected + public
    assert all(o["status"] == "confirmed" for o in orders), live_stack.logs()
    assert not victims & {o["txHash"] for o in protected}
    assert victims & {o["txHash"] for o in public}, [o["events"][1]["data"] for o in public]
    for order in protected:
        assert order["landing"]["via"] == "bundle"
        assert order["fees"]["tipLamports"] >= 1_000


def test_a_protected_swap_meeting_a_spike_is_retried_at_once_and_fills(live_stack):
    """A planted 500 bps spike meets the bundle in its slot: the bundle fails (nothing lands,
    nothing is charged), the status poll hears it within slots, not at its blockhash's expiry
    (151 slots, a minute), and the order's next version fills."""
    tag = f"bundle-spike-{uuid.uuid4()}"
    live_stack.plant_faults(tag, "price_jump")
    started = time.monotonic()
    order = finished(live_stack, submit(live_stack, clientOrderId=tag, slippageBps=100))
    assert order["status"] == "confirmed", order
    assert time.monotonic() - started < 30
    retries = [e for e in order["events"] if e["status"] == "pending" and e["seq"] > 1]
    assert [r["data"]["error"]["code"] for r in retries] in (
        ["BUNDLE_FAILED"],
        ["SLIPPAGE_EXCEEDED"],
    )
    assert [entry["status"] for entry in live_stack.ledger(tag)] == ["landed"]
    assert order["landing"]["versions"] == 2
    assert_reported_as_the_chain_says(live_stack, order)


@pytest.fixture
def high(live_stack) -> Iterator[Any]:
    call = over_http(live_stack.settings["SOLANA_RPC_URL"])
    call("localnet_congest", {"level": "high", "seconds": 120})
    try:
        yield call
    finally:
        call("localnet_congest", {"level": "quiet", "seconds": 1})


def test_at_high_the_oracle_reads_a_hot_pools_market_once_a_slot_and_orders_land(live_stack, high):
    first = high("getSlot")
    wait_until(lambda: high("getSlot") >= first + 25, 30, "25 congested slots")
    chain = RpcChain(live_stack.settings["SOLANA_RPC_URL"])
    oracle = FeeOracle(chain.recent_prioritization_fees, pct=80, slots=20, floor=0)
    pool = pool_address(high, "raydium:SOL-USDC")
    slot = high("getSlot")
    hot, chain_wide = oracle.price([pool], slot), oracle.price([], slot)
    for _ in range(20):
        assert oracle.price([pool], slot) == hot
    assert oracle.reads == 2
    assert hot > chain_wide > 10_000  # a hot pool's market is dearer than the chain's
    order_ids = [submit(live_stack, amount=f"0.{n + 2}") for n in range(4)]
    orders = [finished(live_stack, order_id, timeout_s=90) for order_id in order_ids]
    for order in orders:
        assert order["status"] == "confirmed", order
        assert order["fees"]["microLamportsPerCu"] > 10_000
        assert_reported_as_the_chain_says(live_stack, order)


def test_an_order_at_the_onset_of_congestion_bids_the_newest_slot_and_lands_first_try(live_stack):
    """Twenty quiet slots, then `high`: the window's percentile still says quiet (the floor,
    under the market, would wait a minute for its blockhash to expire); the oracle bids the
    newest slot's fee and the order lands without a second version."""
    url = live_stack.settings["SOLANA_RPC_URL"]
    call = over_http(url)
    pool = pool_address(call, "raydium:SOL-USDC")

    def fees() -> list[int]:
        answer = call("getRecentPrioritizationFees", [pool])
        return [e["prioritizationFee"] for e in sorted(answer, key=lambda e: e["slot"])]

    def quiet_window() -> bool:
        recent = fees()
        return len(recent) >= 20 and not any(recent[-20:])

    call("localnet_congest", {"level": "quiet", "seconds": 1})
    wait_until(quiet_window, 30, "20 quiet slots")
    call("localnet_congest", {"level": "high", "seconds": 120})
    try:
        wait_until(lambda: fees()[-1] > 0, 10, "a congested slot")
        chain, read = RpcChain(url), []

        def reader(accounts: list[str]) -> list[tuple[int, int]]:
            read.append(chain.recent_prioritization_fees(accounts))
            return read[-1]

        price = FeeOracle(reader, pct=80, slots=20, floor=0).price([pool], call("getSlot"))
        window = [fee for _slot, fee in sorted(read[0])[-20:]]
        assert 2 * percentile(window, 80) < window[-1] == price
        order = finished(live_stack, submit(live_stack), timeout_s=45)
        assert order["status"] == "confirmed", order
        assert (order["attempts"], order["landing"]["versions"]) == (1, 1)
        assert order["fees"]["microLamportsPerCu"] > 10_000
        assert_reported_as_the_chain_says(live_stack, order)
    finally:
        call("localnet_congest", {"level": "quiet", "seconds": 1})
