"""Dial backoff with jitter, and the per-peer circuit breaker."""

from __future__ import annotations

import random

from node._backoff import Backoff, Breaker, BreakerState


def test_backoff_grows_exponentially_within_full_jitter() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    rng = random.Random(1)
    delays = [backoff.next_delay(rng) for _ in range(10)]
    ceilings = [min(60.0, 2.0**n) for n in range(10)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[6:]) > 8  # it does grow: later ceilings are reached
    backoff.reset()
    assert backoff.next_delay(rng) <= 1.0


def test_backoff_is_reproducible_from_a_seed() -> None:
    a = [Backoff().next_delay(random.Random(7)) for _ in range(3)]
    b = [Backoff().next_delay(random.Random(7)) for _ in range(3)]
    assert a == b


def test_breaker_opens_after_threshold_and_lets_one_trial_through() -> None:
    breaker = Breaker(threshold=3, cooldown=10.0)
    for t in range(3):
        assert breaker.allow(float(t))
        breaker.failed(float(t))
    assert breaker.state(2.0) is BreakerState.OPEN
    assert not breaker.allow(5.0)
    assert breaker.reopens_at() == 12.0
    assert breaker.state(12.0) is BreakerState.HALF_OPEN
    assert breaker.allow(12.0)
    assert not breaker.allow(12.5)  # one trial at a time
    breaker.failed(13.0)  # the trial failed: open again, twice as long
    assert breaker.state(32.9) is BreakerState.OPEN
    assert breaker.allow(33.0)
    breaker.succeeded()
    assert breaker.state(33.0) is BreakerState.CLOSED
    assert breaker.allow(33.0)
    assert breaker.allow(33.0)


def test_cooldown_is_capped() -> None:
    breaker = Breaker(threshold=1, cooldown=100.0, max_cooldown=150.0)
    breaker.failed(0.0)
    now = 0.0
    for _ in range(5):
        now = breaker.reopens_at() or now
        assert breaker.allow(now)
        breaker.failed(now)
    assert breaker.current_cooldown == 150.0


def test_an_open_breaker_lets_a_trial_through_at_exactly_reopens_at() -> None:
    """At `reopens_at()` itself a trial is allowed, whatever the floats: a dialer that
    sleeps until then must not find it still open (it spun there, in virtual time)."""
    breaker = Breaker(threshold=1, cooldown=60.0)
    opened = 23.302228607257014  # (opened + 60) - opened < 60 in binary floating point
    assert (opened + 60.0) - opened < 60.0
    breaker.failed(opened)
    reopens = breaker.reopens_at()
    assert reopens is not None
    assert breaker.state(reopens) is BreakerState.HALF_OPEN
    assert breaker.allow(reopens)
