"""The hybrid logical clock."""

from __future__ import annotations

from crdt import HLC, hlc_counter, hlc_millis, make_hlc


def test_follows_the_wall_clock_when_it_moves_forward() -> None:
    clock = HLC()
    assert clock.now(1000) == make_hlc(1000)
    assert clock.now(1005) == make_hlc(1005)


def test_counts_within_one_millisecond_and_when_the_wall_clock_goes_back() -> None:
    clock = HLC()
    first = clock.now(1000)
    second = clock.now(1000)
    third = clock.now(900)  # the wall clock stepped back
    assert first < second < third
    assert (hlc_millis(third), hlc_counter(third)) == (1000, 2)


def test_counter_overflow_carries_into_the_millis() -> None:
    clock = HLC(make_hlc(1000, 0xFFFF))
    assert clock.now(1000) == make_hlc(1001, 0)


def test_observing_a_later_timestamp_moves_the_clock_past_it() -> None:
    clock = HLC()
    clock.now(1000)
    clock.observe(make_hlc(5000, 7))
    assert clock.now(1001) == make_hlc(5000, 8)
    clock.observe(make_hlc(10))  # an older timestamp changes nothing
    assert clock.now(1001) == make_hlc(5000, 9)


def test_restarting_from_the_last_timestamp_stays_monotonic() -> None:
    before = HLC()
    stamps = [before.now(2000) for _ in range(3)]
    after = HLC(stamps[-1])  # what a reopened store restores
    assert after.now(1500) > stamps[-1]


def test_skew_tolerance() -> None:
    clock = HLC(max_skew_ms=60_000)
    assert clock.acceptable(make_hlc(1000 + 60_000, 0xFFFF), 1000)
    assert not clock.acceptable(make_hlc(1000 + 60_001), 1000)
    assert clock.acceptable(make_hlc(0), 1000)
