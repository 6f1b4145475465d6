"""A swap's amounts: minimums round in the client's favour and a split's legs never pay less
together than the order's minimum; retries back off, but an open transaction is asked about
again once it can no longer land."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from order_engine.config import Settings
from order_engine.domain.amounts import Fill, leg_minimums, min_amount_out, minimum_out
from order_engine.domain.errors import RpcUnavailable, TransactionUnconfirmed
from order_engine.domain.tokens import resolve
from order_engine.models import Order
from order_engine.services.execution.retry_policy import retry_countdown

USDC = resolve("USDC")
SERVERS = {"DATABASE_URL": "postgresql://u@localhost/db", "REDIS_URL": "redis://localhost:6379/0"}


def order(**fields) -> Order:
    return Order(
        **{"amount_in": Decimal("1"), "slippage_bps": 50, "limit_price": None, "max_price": None}
        | fields
    )


def test_the_slippage_minimum_rounds_down_from_the_quote():
    assert min_amount_out(1_000_000, 50) == 995_000
    assert min_amount_out(999, 50) == 994  # 994.005 → 994
    assert min_amount_out(1_000, 0) == 1_000


@given(
    st.integers(min_value=0, max_value=10**15),
    st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=4),
)
def test_leg_minimums_add_up_to_the_order_minimum_and_follow_the_quotes(total, outputs):
    minimums = leg_minimums(total, outputs)
    assert sum(minimums) == total
    assert all(m >= 0 for m in minimums[:-1])
    # No leg but the last (which takes the rounding) is asked for more than its share.
    quoted = sum(outputs)
    assert all(m * quoted <= total * out for m, out in zip(minimums[:-1], outputs, strict=False))


def test_a_limit_is_the_floor_whatever_the_slippage():
    limit = order(limit_price=Decimal("200"), slippage_bps=5_000)
    # 50 % slippage from a 250 quote would accept 125; the limit holds it at 200.
    assert minimum_out(limit, USDC, 250_000_000) == 200_000_000
    # A quote whose slippage minimum is above the limit keeps that minimum.
    tight = order(limit_price=Decimal("200"), slippage_bps=10)
    assert minimum_out(tight, USDC, 250_000_000) == 249_750_000


def test_a_requoted_market_order_keeps_the_minimum_it_was_promised():
    requoted = order(route={"requoted": True}, min_amount_out=Decimal("240"))
    assert minimum_out(requoted, USDC, 230_000_000) == 240_000_000
    assert minimum_out(order(), USDC, 230_000_000) == 228_850_000


def test_a_fill_reports_its_price_and_its_slippage_against_the_quote():
    sol = resolve("SOL")
    fill = Fill.of(sol, USDC, 500_000_000, 124_000_000, 125_000_000)
    assert (fill.amount_in, fill.amount_out) == (Decimal("0.5"), Decimal("124"))
    assert fill.price == Decimal("248")
    assert fill.slippage_bps == Decimal("80.00")
    better = Fill.of(sol, USDC, 500_000_000, 126_000_000, 125_000_000)
    assert better.slippage_bps == Decimal("-80.00")


def test_retries_back_off_with_half_of_the_delay_fixed():
    settings = Settings.from_env({**SERVERS, "RETRY_BACKOFF_S": "1", "RETRY_BACKOFF_MAX_S": "8"})
    error = RpcUnavailable("down")
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        drawn = [retry_countdown(settings, error, f"seed-{i}", attempt) for i in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in drawn)
    # The same seed draws the same delay (a replay retries at the same times).
    assert retry_countdown(settings, error, "s", 3) == retry_countdown(settings, error, "s", 3)


def test_an_unconfirmed_transaction_is_asked_about_once_it_can_no_longer_land():
    settings = Settings.from_env(SERVERS)
    soon = TransactionUnconfirmed("open", retry_after_s=12.5)
    assert retry_countdown(settings, soon, "s", 1) == 12.5
    # Never later than the broker can hold the message.
    late = TransactionUnconfirmed("open", retry_after_s=10_000)
    longest = settings.visibility_timeout_s - settings.order_lease_s - 1
    assert retry_countdown(settings, late, "s", 1) == longest
