"""A trailing stop's peak kept per pair and size class (marks written only when the quote rises
above the newest, or orders started after it), what intake writes for each new order type, and
what their events say they wait for. Pure: the market is a stub."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from order_engine.domain.tokens import resolve
from order_engine.repositories.stops import Drop, Mark, SizeClass
from order_engine.repositories.trigger import Candidate
from order_engine.services.triggers.describe import awaited
from order_engine.services.triggers.intake import trigger_fields
from order_engine.services.triggers.trailing import peak_of, plan_class

SOL, USDC = resolve("SOL"), resolve("USDC")
TOKENS = {("SOL", "USDC"): (SOL, USDC)}
T0 = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


class StubMarket:
    """A market whose size classes all quote `price` (None: no quote)."""

    def __init__(self, price: Fraction | None) -> None:
        self.price = price

    def class_price(self, token_in, token_out, k) -> Fraction | None:
        return self.price


def size(*marks: tuple[int, str], last_start: int | None = None) -> SizeClass:
    """SOL/USDC class 30 with marks (seconds after T0, peak)."""
    at = None if last_start is None else T0 + timedelta(seconds=last_start)
    kept = tuple(Mark(T0 + timedelta(seconds=s), Decimal(p)) for s, p in marks)
    return SizeClass("SOL", "USDC", 30, at, kept)


def test_a_quote_that_does_not_rise_writes_no_mark_and_one_that_rises_writes_one():
    flat = plan_class(size((0, "150"), last_start=0), TOKENS, StubMarket(Fraction(150)))
    assert flat.mark is None
    assert flat.drops == []
    lower = plan_class(size((0, "150"), last_start=0), TOKENS, StubMarket(Fraction(149)))
    assert lower.mark is None
    higher = plan_class(size((0, "150"), last_start=0), TOKENS, StubMarket(Fraction(151)))
    assert higher.mark == Decimal(151)


def test_orders_started_after_the_newest_mark_get_one_mark_for_all():
    plan = plan_class(size((0, "150"), last_start=5), TOKENS, StubMarket(Fraction(140)))
    assert plan.mark == Decimal(140)
    assert plan_class(size(last_start=5), TOKENS, StubMarket(Fraction(140))).mark == Decimal(140)
    assert plan_class(size(last_start=5), TOKENS, StubMarket(None)).mark is None


def test_a_drop_from_each_mark_reaches_the_trails_it_fires_among_its_followers():
    # Marks at 0 s (peak 200) and 10 s (peak 160); the quote is 152: -24 % and -5 %.
    plan = plan_class(
        size((0, "200"), (10, "160"), last_start=10), TOKENS, StubMarket(Fraction(152))
    )
    first, second = T0, T0 + timedelta(seconds=10)
    assert plan.drops == [
        Drop("SOL", "USDC", 30, None, first, 2_400),
        Drop("SOL", "USDC", 30, first, second, 500),
    ]


def candidate(started_s: int, own_peak: str | None) -> Candidate:
    return Candidate(
        uuid.uuid4(),
        "trailing_stop",
        "SOL",
        "USDC",
        Decimal("1.5"),
        None,
        None,
        stop_price=None,
        size_class=30,
        trail_bps=500,
        peak_price=None if own_peak is None else Decimal(own_peak),
        trail_since=T0 + timedelta(seconds=started_s),
    )


def test_an_orders_peak_is_its_own_or_the_highest_mark_since_it_started():
    marks = size((0, "200"), (10, "160"), (20, "155")).marks
    assert peak_of(candidate(-5, "150"), marks) == Decimal(200)  # follows every mark
    assert peak_of(candidate(5, "150"), marks) == Decimal(160)  # not the one before it
    assert peak_of(candidate(15, "170"), marks) == Decimal(170)  # its own is higher
    assert peak_of(candidate(25, None), marks) == Decimal(0)  # nothing seen yet


def body(**fields) -> dict:
    return {"tokenIn": SOL, "tokenOut": USDC, "amount": Decimal("2"), **fields}


def test_a_stop_waits_below_the_market_and_one_already_met_runs_at_once():
    waits = body(type="stop", triggerPrice=Decimal("120"))
    values, first = trigger_fields(waits, lambda *_: 300_000_000, lambda *_: None)
    assert values["stop_price"] == Decimal("120")
    assert values["waiting"] is True
    assert values["size_class"] == 30  # 2 SOL: 2^30 <= 2e9 lamports < 2^31
    assert first["waitingFor"] == {"triggerPrice": "120"}
    values, first = trigger_fields(waits, lambda *_: 240_000_000, lambda *_: None)
    assert values["waiting"] is False
    assert first == {
        "stopMetAtSubmission": {"triggerPrice": "120", "quotedAmountOut": "240.000000"}
    }


def test_a_bracket_waits_on_both_legs_and_one_met_at_submission_names_its_leg():
    bracket = body(
        type="oco",
        takeProfit={"limitPrice": Decimal("260")},
        stopLoss={"triggerPrice": Decimal("120")},
    )
    values, first = trigger_fields(bracket, lambda *_: 300_000_000, lambda *_: None)
    assert (values["limit_price"], values["trigger_price"], values["stop_price"]) == (
        Decimal("260"),
        Decimal("260"),
        Decimal("120"),
    )
    assert first["waitingFor"] == {
        "takeProfit": {"limitPrice": "260"},
        "stopLoss": {"triggerPrice": "120"},
    }
    values, first = trigger_fields(bracket, lambda *_: 520_000_000, lambda *_: None)
    assert (values["waiting"], values["trigger_leg"], first["leg"]) == (
        False,
        "takeProfit",
        "takeProfit",
    )
    assert first["bracketMetAtSubmission"]["requiredAmountOut"] == "520.000000"
    values, first = trigger_fields(bracket, lambda *_: 200_000_000, lambda *_: None)
    assert (values["trigger_leg"], first["leg"]) == ("stopLoss", "stopLoss")


def test_a_trailing_stop_starts_from_its_class_quote_or_waits_for_its_activation_price():
    trailing = body(type="trailing_stop", trailBps=500)
    values, first = trigger_fields(trailing, lambda *_: None, lambda *_: Fraction(150))
    assert (values["peak_price"], values["stop_price"]) == (Decimal(150), Decimal("142.5"))
    assert values["trail_since"] is not None
    assert "trigger_price" not in values
    assert first["waitingFor"] == {"trailBps": 500, "peakPrice": "150", "triggerLevel": "142.5"}
    activated_later = body(type="trailing_stop", trailBps=500, activationPrice=Decimal("200"))
    values, first = trigger_fields(activated_later, lambda *_: None, lambda *_: Fraction(150))
    assert values["trigger_price"] == Decimal(200)
    assert "trail_since" not in values
    assert first["waitingFor"] == {"trailBps": 500, "activationPrice": "200"}
    # No quote at submission: it trails at once from the engine's first mark.
    values, _ = trigger_fields(trailing, lambda *_: None, lambda *_: None)
    assert (values["peak_price"], values["stop_price"]) == (None, 0)


def test_a_rearmed_bracket_says_it_waits_for_both_legs_again():
    class Row:
        type, token_out = "oco", "USDC"
        limit_price, max_price, stop_price = Decimal("260"), None, Decimal("120")
        trail_bps = activation_price = peak_price = trail_since = None

    assert awaited(Row()) == {
        "takeProfit": {"limitPrice": "260"},
        "stopLoss": {"triggerPrice": "120"},
    }
