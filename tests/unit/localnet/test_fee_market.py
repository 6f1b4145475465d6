"""The fee market's pure parts: background demand, the slot auction, the fee history."""

from __future__ import annotations

from order_engine.localnet.cluster import demand
from order_engine.localnet.cluster.auction import Offer, select
from order_engine.localnet.cluster.demand import LEVELS, Bid, background, slot_price
from order_engine.localnet.cluster.fees import FeeHistory, SlotFees

BLOCK, ACCOUNT = 60_000_000, 12_000_000


class _Batch:
    def __init__(self) -> None:
        self.fee_slots: dict = {}
        self.fee_floor = None


class _Bank:
    def __init__(self) -> None:
        self.batch = _Batch()


def offer(key: str, price: int, units: int = 200_000, writable=("w",), seq: int = 0) -> Offer:
    return Offer(key, price, units, tuple(writable), seq)


def test_the_same_seed_gives_the_same_demand_and_slots_differ():
    level = LEVELS["high"]
    first = background(7, 1_000, level, BLOCK, ACCOUNT, 2)
    assert first == background(7, 1_000, level, BLOCK, ACCOUNT, 2)
    assert first != background(7, 1_001, level, BLOCK, ACCOUNT, 2)
    assert first != background(8, 1_000, level, BLOCK, ACCOUNT, 2)


def test_a_levels_demand_is_its_share_of_the_block_and_of_each_hot_pools_accounts():
    for level in LEVELS.values():
        bids = background(7, 5, level, BLOCK, ACCOUNT, 2)
        hot = [sum(b.units for b in bids if b.hot == i) for i in (0, 1)]
        general = sum(b.units for b in bids if b.hot < 0)
        assert hot == [level.hot_pct * ACCOUNT // 100] * 2
        assert general + 2 * min(hot[0], ACCOUNT) == level.demand_pct * BLOCK // 100
        bundles = [b for b in bids if b.tip]
        assert bundles
        assert all(b.tip >= demand.MIN_TIP_LAMPORTS for b in bundles)


def test_the_slot_price_moves_slot_to_slot_within_its_wave_and_jitter():
    median = LEVELS["high"].median
    prices = [slot_price(7, slot, median) for slot in range(2_000)]
    assert min(prices) >= median * 70 * 88 // 10_000
    assert max(prices) <= median * 130 * 112 // 10_000 + 1
    moves = [abs(b - a) / a for a, b in zip(prices, prices[1:], strict=False)]
    assert max(moves) > 0.05  # it moves slot to slot
    # ...but the last ten slots' 75th percentile is within ±40 % of the next slot's price
    close = 0
    for slot in range(10, 2_000):
        recent = sorted(prices[slot - 10 : slot])
        close += abs(recent[7] / prices[slot] - 1) < 0.4
    assert close / 1_990 > 0.95


def test_the_auction_includes_by_price_per_unit_while_the_block_holds():
    offers = [offer("low", 10, 600), offer("high", 30, 600), offer("mid", 20, 600)]
    chosen, _ = select(offers, [], [], block_cu=1_200, account_cu=10_000)
    assert [o.key for o in chosen] == ["high", "mid"]


def test_the_first_that_does_not_fit_the_block_closes_it():
    offers = [
        offer("big", 30, 900, ("a",)),
        offer("huge", 20, 500, ("b",)),
        offer("small", 10, 100, ("c",)),
    ]
    chosen, _ = select(offers, [], [], block_cu=1_000, account_cu=10_000)
    assert [o.key for o in chosen] == ["big"]  # "small" would fit the gap: it waits too


def test_an_accounts_budget_caps_what_writes_it_and_ties_go_in_arrival_order():
    offers = [
        offer("second", 10, 500, ("pool",), seq=2),
        offer("first", 10, 500, ("pool",), seq=1),
        offer("elsewhere", 5, 500, ("other",), seq=3),
    ]
    chosen, _ = select(offers, [], [], block_cu=10_000, account_cu=600)
    assert [o.key for o in chosen] == ["first", "elsewhere"]


def test_background_bids_compete_and_hot_ones_spend_their_pools_accounts():
    hot = [("pool", "vault")]
    bids = [Bid(50, 50, 700, 0, 0), Bid(40, 40, 300, -1, 0)]
    offers = [offer("mine", 45, 200, ("vault",)), offer("cheap", 1, 100, ("x",))]
    chosen, bids_in = select(offers, bids, hot, block_cu=1_000, account_cu=800)
    assert [o.key for o in chosen] == []  # the vault holds 800: the hot bid's 700 came first
    assert bids_in == bids
    chosen, _ = select(offers[1:], bids, hot, block_cu=1_100, account_cu=800)
    assert [o.key for o in chosen] == ["cheap"]


def test_a_slots_fee_is_its_minimum_raised_to_each_given_accounts_minimum():
    # agave's prioritization_fee_cache test: [5: a, b], [9: b, c], [2: a, c]
    fees = SlotFees()
    fees.paid(5, ("a", "b"))
    fees.paid(9, ("b", "c"))
    fees.paid(2, ("a", "c"))
    fees.prune()
    assert fees.minimum == 2
    assert fees.accounts == {"b": 5}
    assert fees.fee([]) == 2
    assert fees.fee(["a"]) == 2
    assert fees.fee(["b", "c"]) == 5


def test_the_history_answers_the_last_150_finished_slots_and_forgets_older_ones():
    bank = _Bank()
    history = FeeHistory(bank)  # type: ignore[arg-type]
    history.slot(10).paid(7, ("pool",))
    history.slot(11).paid(3, ())
    history.finish(12)
    assert bank.batch.fee_slots[10] == {"slot": 10, "min": 7, "accounts": {}, "tips": []}
    answer = history.recent(12, ["pool"])
    assert len(answer) == 12  # slots 0..11: fewer than 150 exist
    assert answer[-2:] == [
        {"slot": 10, "prioritizationFee": 7},
        {"slot": 11, "prioritizationFee": 3},
    ]
    later = history.recent(200, [])
    assert [a["slot"] for a in later] == list(range(50, 200))
    history.finish(200)
    assert bank.batch.fee_floor == 50
    assert history.recent(161, []) == history.recent(161, ["pool"])  # slot 10 forgotten


def test_the_tip_floor_is_landed_tips_percentiles():
    history = FeeHistory(_Bank())  # type: ignore[arg-type]
    for slot, tips in ((1, [1_000, 2_000]), (2, [3_000, 4_000, 100_000])):
        history.slot(slot).tips.extend(tips)
    floor = history.tip_floor(3, 1_780_000_000_000)
    assert floor["landed_tips_25th_percentile"] == 2_000
    assert floor["landed_tips_50th_percentile"] == 3_000
    assert floor["landed_tips_99th_percentile"] == 100_000
    assert floor["ema_landed_tips_50th_percentile"] == 1_000 + (4_000 - 1_000) // 16
    assert floor["time"] == "2026-05-28T20:26:40Z"
