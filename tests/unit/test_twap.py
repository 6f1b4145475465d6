"""TWAP orders without a chain or a database: slicing in atoms, the schedule, what a parent's
children add up to, and the shape of a TWAP body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from marshmallow import ValidationError

from order_engine.domain import twap
from order_engine.domain.status import TRANSITIONS, OrderStatus
from order_engine.domain.tokens import resolve
from order_engine.schemas.order import OrderCreateSchema

U64_MAX = 2**64 - 1
ACCEPTED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY_S = 24 * 3600
SCHEMA = OrderCreateSchema(limit_max_horizon_s=DAY_S)
TWAP = {
    "type": "twap",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": "100",
    "slices": 20,
    "intervalS": 30,
}


# -- slicing in atoms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "slices"),
    [
        (1, 1),
        (7, 7),  # one atom each
        (8, 7),  # one slice one atom more
        (13, 7),  # six slices one atom more
        (100 * 10**9, 20),  # 100 SOL in 20: even
        (100 * 10**9 + 1, 20),
        (10**9 - 1, 3),
        (U64_MAX, 1000),  # the largest amount, the most slices
    ],
)
def test_slices_sum_to_the_amount_exactly_in_atoms_and_differ_by_at_most_one(total, slices):
    amounts = twap.slice_atoms(total, slices)
    assert len(amounts) == slices
    assert sum(amounts) == total
    assert min(amounts) >= 1
    assert max(amounts) - min(amounts) <= 1
    assert amounts == sorted(amounts, reverse=True)  # the larger ones first
    assert amounts.count(max(amounts)) == (total % slices or slices)


def test_every_split_of_small_amounts_sums_exactly():
    for total in range(1, 60):
        for slices in range(1, total + 1):
            assert sum(twap.slice_atoms(total, slices)) == total


@pytest.mark.parametrize(("total", "slices"), [(0, 1), (6, 7), (5, 0), (10, -1)])
def test_fewer_atoms_than_slices_or_no_slice_is_refused(total, slices):
    with pytest.raises(ValueError, match="at least one atom"):
        twap.slice_atoms(total, slices)


def test_a_decimal_amount_splits_in_its_tokens_atoms():
    sol = resolve("SOL")
    amounts = [sol.from_atoms(a) for a in twap.slice_atoms(sol.to_atoms(Decimal("1.000000001")), 3)]
    assert amounts == [Decimal("0.333333334"), Decimal("0.333333334"), Decimal("0.333333333")]
    assert sum(amounts) == Decimal("1.000000001")


# -- the schedule ----------------------------------------------------------------------------


def test_slice_k_is_due_k_intervals_after_acceptance():
    assert twap.due_at(ACCEPTED, 0, 30) == ACCEPTED
    assert twap.due_at(ACCEPTED, 19, 30) == ACCEPTED + timedelta(seconds=570)
    assert twap.ends_at(ACCEPTED, 20, 30) == ACCEPTED + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("after_s", "due"),
    [(-0.001, -1), (0, 0), (29.999, 0), (30, 1), (59.9, 1), (570, 19), (10_000, 19)],
)
def test_the_last_slice_due_at_a_moment_is_counted_at_its_boundaries(after_s, due):
    moment = ACCEPTED + timedelta(seconds=after_s)
    assert twap.due_through(ACCEPTED, moment, 30, 20) == due


def test_a_parent_goes_from_pending_to_its_end_which_a_swap_never_may():
    assert OrderStatus.CONFIRMED in twap.PARENT_TRANSITIONS[OrderStatus.PENDING]
    assert OrderStatus.CONFIRMED not in TRANSITIONS[OrderStatus.PENDING]
    assert OrderStatus.ROUTING not in twap.PARENT_TRANSITIONS[OrderStatus.PENDING]
    for final in (OrderStatus.CONFIRMED, OrderStatus.FAILED, OrderStatus.CANCELLED):
        assert twap.PARENT_TRANSITIONS[final] == frozenset()


# -- what the children add up to -------------------------------------------------------------


def child(index: int, status: str, amount: str, out: str | None = None) -> twap.ChildFill:
    return twap.ChildFill(index, status, Decimal(amount), None if out is None else Decimal(out))


def test_every_slice_filled_confirms_the_parent_with_the_average_price_rounded_down():
    children = [child(0, "confirmed", "0.4", "60.1"), child(1, "confirmed", "0.3", "44.9")]
    progress = twap.Progress.of(Decimal("0.7"), 2, children)
    assert (progress.filled_in, progress.filled_out, progress.remaining) == (
        Decimal("0.7"),
        Decimal("105.0"),
        Decimal("0"),
    )
    assert progress.average_price == Decimal("150.000000000000")
    assert twap.Progress.of(Decimal(3), 2, [child(0, "confirmed", "3", "1")]).average_price == (
        Decimal("0.333333333333")  # 1/3, down
    )
    assert progress.outcome(held_back=0) == (OrderStatus.CONFIRMED, None)


def test_a_parent_partly_filled_fails_with_what_is_left_and_why():
    children = [
        child(0, "confirmed", "1", "150"),
        child(1, "failed", "1"),
        child(2, "cancelled", "1"),
    ]
    progress = twap.Progress.of(Decimal("4"), 4, children)
    assert (progress.started, progress.finished, progress.filled) == (3, 3, 1)
    status, error = progress.outcome(held_back=1)
    assert status is OrderStatus.FAILED
    assert isinstance(error, twap.TwapPartiallyFilled)
    assert error.code == "TWAP_PARTIALLY_FILLED"
    assert error.message == (
        "1 of 4 slices filled (3 not: 1 held back by its limitPrice, 1 failed, 1 cancelled); 3 left"
    )


def test_a_parent_nothing_filled_fails_as_not_filled():
    progress = twap.Progress.of(Decimal("2"), 2, [])
    status, error = progress.outcome(held_back=2)
    assert (status, error.code if error else None) == (OrderStatus.FAILED, "TWAP_NOT_FILLED")
    assert progress.average_price is None
    assert progress.remaining == Decimal("2")


def test_children_still_running_count_as_started_not_finished():
    children = [child(0, "confirmed", "1", "2"), child(1, "submitted", "1")]
    progress = twap.Progress.of(Decimal("2"), 2, children)
    assert (progress.started, progress.finished, progress.remaining) == (2, 1, Decimal("1"))


# -- the body's shape ------------------------------------------------------------------------


def refused(body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as refusal:
        SCHEMA.load(body)
    assert isinstance(refusal.value.messages, dict)
    return refusal.value.messages


def test_a_twap_body_loads_with_its_slices_interval_and_optional_limit():
    order = SCHEMA.load({**TWAP, "limitPrice": "140"})
    assert (order["slices"], order["intervalS"], order["limitPrice"]) == (20, 30, Decimal(140))
    assert SCHEMA.load(TWAP)["limitPrice"] is None


def test_a_twap_needs_slices_and_an_interval_and_nothing_else_takes_them():
    assert refused({**TWAP, "slices": None, "intervalS": None}) == {
        "slices": ["Missing data for required field (twap orders)."],
        "intervalS": ["Missing data for required field (twap orders)."],
    }
    market = {k: v for k, v in TWAP.items() if k not in {"slices", "intervalS"}}
    assert refused({**market, "type": "market", "slices": 2}) == {
        "slices": ["Not used by market orders."]
    }
    assert "expiresAt" in refused({**TWAP, "expiresAt": "2099-01-01T00:00:00Z"})
    assert "maxPrice" in refused({**TWAP, "maxPrice": "1"})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slices": 0}, "slices"),
        ({"slices": 1001}, "slices"),
        ({"slices": "20"}, "slices"),  # an integer, not text
        ({"slices": 2.5}, "slices"),
        ({"intervalS": 0}, "intervalS"),
        ({"intervalS": 86_401}, "intervalS"),
        ({"intervalS": True}, "intervalS"),
    ],
)
def test_slices_and_interval_out_of_their_bounds_are_refused_by_name(change, field):
    assert field in refused({**TWAP, **change})


def test_the_last_slice_must_start_within_the_horizon():
    assert SCHEMA.load({**TWAP, "slices": 25, "intervalS": 3600})  # the last at 24 h exactly
    errors = refused({**TWAP, "slices": 26, "intervalS": 3600})
    assert errors == {
        "intervalS": [
            "The last slice would start 90000 s from now, beyond 86400 s (LIMIT_MAX_HORIZON_S)."
        ]
    }


def test_each_slice_needs_one_atom_of_the_token_sold():
    assert SCHEMA.load({**TWAP, "amount": "0.00002", "slices": 20})  # 20 atoms of USDC
    errors = refused({**TWAP, "tokenIn": "USDC", "tokenOut": "SOL", "amount": "0.00001"})
    assert errors == {
        "slices": ["20 slices need at least 20 of USDC's smallest units; 0.00001 USDC is 10."]
    }
