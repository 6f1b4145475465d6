"""When a waiting transaction is sent again: late by the process's recent landings."""

from __future__ import annotations

from order_engine.chain.rebroadcast import MIN_SAMPLES, LandingDelays


def delays(*landed: int) -> LandingDelays:
    table = LandingDelays(slot_ms=400)
    for slots in landed:
        table.landed(slots)
    return table


def test_until_enough_have_landed_the_configured_interval_holds():
    assert delays(*[1] * (MIN_SAMPLES - 1)).first_resend_s(3.0) == 3.0


def test_on_a_chain_landing_in_a_slot_the_first_re_send_comes_within_two_seconds():
    # the 95th percentile (1 slot), a quarter more (2), two slots to see it: 4 slots
    assert delays(*[1] * MIN_SAMPLES).first_resend_s(3.0) == 1.6


def test_a_few_late_landings_do_not_move_it():
    fast = [1] * 97 + [20, 25, 30]  # three dropped and re-sent: above the 95th percentile
    assert delays(*fast).first_resend_s(3.0) == 1.6


def test_on_a_slow_chain_it_waits_past_the_usual_landing_but_never_past_twice_the_interval():
    # landings 5 to 7 slots after the send (2-3 s): 95th percentile 7, 9 with a quarter, 11
    assert delays(*[5, 6, 7] * 20).first_resend_s(3.0) == 4.4
    assert delays(*[40] * MIN_SAMPLES).first_resend_s(3.0) == 6.0


def test_only_the_most_recent_landings_count():
    table = delays(*[40] * MIN_SAMPLES)
    for _ in range(256):
        table.landed(1)
    assert table.first_resend_s(3.0) == 1.6
