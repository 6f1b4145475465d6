"""Landing, without a chain: the fee oracle's percentile, floor and per-slot reads, the cap that
cuts a price and a tip, escalation, the limit from a simulation, the report from getTransaction,
and the order body's landing fields."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from marshmallow import ValidationError

from order_engine.chain.fees import FeeOracle, percentile
from order_engine.chain.statuses import TransactionBalances
from order_engine.schemas.order import OrderCreateSchema
from order_engine.services.execution import landing

MARKET = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
SCHEMA = OrderCreateSchema(limit_max_horizon_s=3600)


class Reader:
    """A node's recent fees per account set, counting the reads."""

    def __init__(self, fees: list[int], delay_s: float = 0.0) -> None:
        self.fees, self.delay_s = fees, delay_s
        self.reads: list[tuple[str, ...]] = []

    def __call__(self, accounts: Sequence[str]) -> list[tuple[int, int]]:
        self.reads.append(tuple(accounts))
        time.sleep(self.delay_s)
        return [(slot, fee) for slot, fee in enumerate(self.fees)]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 80) == 80
    assert percentile(values, 100) == 100
    assert percentile([5, 1, 9], 50) == 5
    assert percentile([], 80) == 0


def test_the_oracle_takes_the_percentile_of_the_last_slots_raised_to_the_floor():
    reader = Reader([1_000_000] * 10 + list(range(1_000, 21_000, 1_000)))  # 20 recent slots
    oracle = FeeOracle(reader, pct=75, slots=20, floor=500)
    assert oracle.price(["pool", "vault"], slot=1) == 15_000  # the old dear slots are out
    quiet = FeeOracle(Reader([0] * 150), pct=75, slots=20, floor=1_000)
    assert quiet.price(["pool"], slot=1) == 1_000


def test_a_chain_turning_dearer_at_once_is_bid_at_its_newest_slot():
    # Quiet, then congested from the newest slot: the percentile still says quiet.
    onset = FeeOracle(Reader([0] * 30 + [52_000]), pct=80, slots=20, floor=1_000)
    assert onset.price(["pool"], slot=1) == 52_000
    # A level up: from about 10,000 to about 50,000.
    level_up = FeeOracle(Reader([10_000] * 19 + [48_000]), pct=80, slots=20, floor=1_000)
    assert level_up.price(["pool"], slot=1) == 48_000
    # Ordinary moves within a level leave the percentile alone, wherever the node lists them.
    fees = [50_000 + 1_000 * (i % 7) for i in range(19)] + [90_000]
    steady = FeeOracle(lambda _accounts: list(enumerate(fees))[::-1], 80, 20, 1_000)
    assert steady.price(["pool"], slot=1) == percentile(fees, 80) == 55_000


def test_the_oracle_reads_once_per_slot_per_account_set():
    reader = Reader([10_000] * 20)
    oracle = FeeOracle(reader, pct=80, slots=20, floor=0)
    for _ in range(50):
        oracle.price(["b", "a"], slot=7)
        oracle.price(["a", "b", "a"], slot=7)  # the same set, however it is spelled
    assert len(reader.reads) == 1
    oracle.price(["c"], slot=7)  # another pool's market
    assert len(reader.reads) == 2
    oracle.price(["a", "b"], slot=6)  # an older slot is served from the newer read
    assert len(reader.reads) == 2
    oracle.price(["a", "b"], slot=8)
    assert reader.reads == [("a", "b"), ("c",), ("a", "b")]


def test_concurrent_callers_of_one_set_wait_for_one_read():
    reader = Reader([10_000] * 20, delay_s=0.05)
    oracle = FeeOracle(reader, pct=80, slots=20, floor=0)
    prices: list[int] = []
    threads = [
        threading.Thread(target=lambda: prices.append(oracle.price(["a"], 3))) for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert prices == [10_000] * 16
    assert len(reader.reads) == 1


def test_the_cap_cuts_price_and_tip_never_the_tip_below_the_minimum():
    # 100,000 CU at 50,000 µlamports = 5,000 lamports, plus a 5,000 tip: 10,000 in all.
    assert landing.fit_to_cap(100_000, 50_000, 5_000, 20_000) == (50_000, 5_000)
    price, tip = landing.fit_to_cap(100_000, 50_000, 5_000, 4_000)
    assert tip == 2_000
    assert landing.priority_lamports(100_000, price) + tip <= 4_000
    price, tip = landing.fit_to_cap(100_000, 50_000, 5_000, 1_000)
    assert (price, tip) == (0, 1_000)
    price, tip = landing.fit_to_cap(83_211, 7_777_777, 0, 3_333)  # public: no tip
    assert tip == 0
    assert (
        landing.priority_lamports(83_211, price)
        <= 3_333
        < landing.priority_lamports(83_211, price + 1)
    )


def test_escalation_and_the_limit_from_a_simulation():
    assert landing.escalated(10_000, None, 150) == 10_000
    assert landing.escalated(10_000, 10_000, 150) == 15_000
    assert landing.escalated(40_000, 10_000, 150) == 40_000  # the market already asks more
    assert landing.escalated(1_000, 1_001, 150) == 1_502  # rounded up
    assert landing.compute_limit(72_347, 115) == 83_200
    assert landing.compute_limit(72_347, 115) <= 72_347 * 1.3


def _balances(fee: int, err: Any = None, units: int = 72_347) -> TransactionBalances:
    return TransactionBalances(9, err, fee, (), (), (), {}, {}, units)


def test_the_report_is_what_get_transaction_says():
    plan = landing.Plan(landing.BUNDLE, 1_000, 83_200, 1_500, 2, sent_slot=7)
    report = landing.report(plan, _balances(5_084))
    assert report == {
        "fees": {
            "baseLamports": 5_000,
            "priorityLamports": 84,
            "tipLamports": 1_500,
            "microLamportsPerCu": 1_000,
            "computeUnitLimit": 83_200,
            "computeUnitsConsumed": 72_347,
        },
        "landing": {"via": "bundle", "sentSlot": 7, "landedSlot": 9, "versions": 2},
    }
    unlanded = landing.report(plan, None)
    assert unlanded["fees"]["baseLamports"] + unlanded["fees"]["priorityLamports"] == 0
    assert unlanded["fees"]["tipLamports"] == 0
    assert unlanded["landing"]["landedSlot"] is None
    public = landing.Plan(landing.RPC, 1_000, 83_200, 0, 1, sent_slot=7)
    failed = landing.report(public, _balances(5_084, err={"InstructionError": [4, "x"]}))
    assert failed["fees"]["baseLamports"] + failed["fees"]["priorityLamports"] == 5_084


def test_an_order_says_nothing_and_gets_the_settings():
    settings = SimpleNamespace(max_fee_lamports=100_000, mev_protection=True)
    order = SimpleNamespace(
        priority_fee_micro_lamports=None, max_fee_lamports=None, mev_protection=None
    )
    assert landing.Options.of(order, settings) == landing.Options(None, 100_000, True)  # type: ignore[arg-type]
    order = SimpleNamespace(
        priority_fee_micro_lamports=25_000, max_fee_lamports=7_000, mev_protection=False
    )
    assert landing.Options.of(order, settings) == landing.Options(25_000, 7_000, False)  # type: ignore[arg-type]


def test_the_landing_fields_load():
    order = SCHEMA.load(MARKET)
    assert (order["priorityFee"], order["maxFeeLamports"], order["mevProtection"]) == (
        None,
        None,
        None,
    )
    order = SCHEMA.load(
        {
            **MARKET,
            "priorityFee": {"microLamportsPerCu": 25_000},
            "maxFeeLamports": 50_000,
            "mevProtection": False,
        }
    )
    assert (order["priorityFee"], order["maxFeeLamports"], order["mevProtection"]) == (
        25_000,
        50_000,
        False,
    )
    assert SCHEMA.load({**MARKET, "priorityFee": "auto"})["priorityFee"] is None
    assert SCHEMA.load({**MARKET, "maxFeeLamports": 0, "mevProtection": False})
    # null is the default, as for the body's other optional fields
    assert (
        SCHEMA.load({**MARKET, "priorityFee": None, "mevProtection": None})["priorityFee"] is None
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priorityFee", "fast"),
        ("priorityFee", 25_000),
        ("priorityFee", {"microLamportsPerCu": -1}),
        ("priorityFee", {"microLamportsPerCu": 10**9}),
        ("priorityFee", {"microLamportsPerCu": 1.5}),
        ("priorityFee", {"microLamportsPerCu": True}),
        ("priorityFee", {"microLamportsPerCu": 5, "extra": 1}),
        ("maxFeeLamports", -1),
        ("maxFeeLamports", 10**10),
        ("maxFeeLamports", "5000"),
        ("maxFeeLamports", 999),  # protected by default: no room for the least tip
        ("mevProtection", "yes"),
        ("mevProtection", 1),
    ],
)
def test_a_bad_landing_field_is_refused_by_name(field: str, value: Any):
    with pytest.raises(ValidationError) as refusal:
        SCHEMA.load({**MARKET, field: value})
    assert list(refusal.value.messages) == [field]  # type: ignore[arg-type]


def test_the_unit_table_keeps_the_latest_figure_per_shape_and_forgets_the_oldest():
    table = landing.UnitTable(size=2)
    assert table.get("a") is None
    table.learn("a", 90_000)
    table.learn("a", 72_000)  # the first swap created an account; the next did not
    assert table.get("a") == 72_000
    table.learn("b", 1)
    table.learn("c", 2)
    assert table.get("a") is None  # the oldest went
    table.forget("b")
    assert (table.get("b"), table.get("c")) == (None, 2)
    table.learn("c", None)  # a transaction with no figure teaches nothing
    assert table.get("c") == 2


def test_builds_of_a_new_shape_that_arrive_together_wait_for_one_simulation():
    table, simulations = landing.UnitTable(), []
    started, release = threading.Event(), threading.Event()

    def build() -> int | None:  # the builder's use of the table (build.py)
        units = table.get("swap")
        if units is None:
            with table.simulation_of("swap"):
                units = table.get("swap")
                if units is None:
                    simulations.append(1)
                    started.set()
                    release.wait(5)
                    units = 71_000
                    table.learn("swap", units)
        return units

    figures: list[int | None] = []
    threads = [threading.Thread(target=lambda: figures.append(build())) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert simulations == [1]
    assert figures == [71_000] * 8
