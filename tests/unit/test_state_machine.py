"""The order state machine (models.TRANSITIONS) and its enforcement in the repository."""

import uuid

import pytest

from order_engine.domain.status import TERMINAL_STATUSES, TRANSITIONS, OrderStatus
from order_engine.repositories.order import OrderRepository
from order_engine.repositories.transitions import Step, Transition

HAPPY_PATH = ["pending", "routing", "building", "submitted", "confirmed"]


def test_the_happy_path_is_legal_step_by_step():
    for before, after in zip(HAPPY_PATH, HAPPY_PATH[1:], strict=False):
        assert OrderStatus(after) in TRANSITIONS[OrderStatus(before)]


def test_terminal_statuses_have_no_way_out():
    assert all(TRANSITIONS[status] == frozenset() for status in TERMINAL_STATUSES)


def test_cancel_only_before_a_transaction_is_built():
    cancellable = {s for s, afters in TRANSITIONS.items() if OrderStatus.CANCELLED in afters}
    assert cancellable == {OrderStatus.PENDING, OrderStatus.ROUTING}


@pytest.mark.parametrize(
    ("before", "after"),
    [("confirmed", "routing"), ("building", "cancelled"), ("pending", "confirmed")],
)
def test_the_repository_refuses_an_illegal_transition_before_touching_the_database(before, after):
    repository = OrderRepository(session=None)  # type: ignore[arg-type]  # never reached
    with pytest.raises(ValueError, match="no transition"):
        repository.transition(uuid.uuid4(), OrderStatus(before), OrderStatus(after), event_data={})


def test_a_transition_refuses_an_illegal_step_between_two_statuses_before_any_sql():
    steps = [Step(OrderStatus.ROUTING, {}), Step(OrderStatus.SUBMITTED, {})]  # skips building
    with pytest.raises(ValueError, match="no transition from routing to submitted"):
        Transition.of(uuid.uuid4(), OrderStatus.PENDING, steps)
