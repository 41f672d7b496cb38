"""Token bucket math, Retry-After parsing, and the in-process limiter and breaker store."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from guestcomms.domain.breaker import BreakerConfig, BreakerState
from guestcomms.domain.ratelimit import TokenBucket, parse_retry_after
from guestcomms.engine.ratelimit import (
    InProcessBreakerStore,
    InProcessRateLimiter,
    RateLimitWaitTooLongError,
    update_breaker,
)

NOW = datetime(2025, 6, 14, 15, 0, 0, tzinfo=UTC)


def max_in_window(times: Sequence[float], *, window_seconds: float) -> int:
    """The most timestamps that fall in any half-open window [t, t + window_seconds)."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_bucket_gives_the_burst_then_the_steady_rate() -> None:
    """A full bucket grants ``burst`` at once, then one token per 1/rate seconds."""
    bucket = TokenBucket(10.0, 3)
    assert [bucket.try_take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take(0.0) == pytest.approx(0.1)
    assert bucket.try_take(0.05) == pytest.approx(0.05)
    assert bucket.try_take(0.1) == 0.0
    assert bucket.try_take(0.1) == pytest.approx(0.1)


def test_refusal_takes_nothing() -> None:
    """try_take that answers 'wait' leaves the bucket as it was."""
    bucket = TokenBucket(1.0, 1)
    assert bucket.try_take(0.0) == 0.0
    assert bucket.try_take(0.5) == pytest.approx(0.5)
    assert bucket.try_take(0.5) == pytest.approx(0.5)
    assert bucket.try_take(1.0) == 0.0


def test_bucket_never_holds_more_than_burst() -> None:
    """An idle bucket refills to ``burst`` and no further."""
    bucket = TokenBucket(100.0, 5)
    assert bucket.available(3600.0) == 5.0


def test_clock_stepping_back_refills_nothing() -> None:
    """A ``now`` before the last refill neither adds tokens nor rewinds the bucket."""
    bucket = TokenBucket(1.0, 1)
    bucket.try_take(10.0)
    assert bucket.try_take(5.0) > 0
    assert bucket.try_take(11.0) == 0.0


def test_greedy_caller_over_a_simulated_minute_stays_within_rate_plus_burst() -> None:
    """Polling every millisecond for 60 s, no 1-s window gets more than rate + burst."""
    rate, burst = 50.0, 5
    bucket = TokenBucket(rate, burst)
    grants = [t / 1000 for t in range(60_000) if bucket.try_take(t / 1000) == 0.0]
    assert max_in_window(grants, window_seconds=1.0) <= rate + burst
    assert len(grants) == pytest.approx(burst + rate * 60, abs=1)


def test_reservations_over_a_simulated_minute_stay_within_rate_plus_burst() -> None:
    """Reserving callers are granted at now + wait, never more than rate + burst per window."""
    rate, burst = 50.0, 5
    bucket = TokenBucket(rate, burst)
    grants: list[float] = []
    now = 0.0
    while now < 60.0:
        for _ in range(4):  # four callers arrive every 10 ms: twice the rate
            wait = bucket.reserve(now, max_wait_seconds=1.0)
            if wait is not None:
                grants.append(now + wait)
        now += 0.01
    assert max_in_window(grants, window_seconds=1.0) <= rate + burst
    assert max_in_window(grants, window_seconds=10.0) <= rate * 10 + burst
    assert grants == sorted(grants)  # first come, first served


def test_reserve_refuses_past_the_max_wait_and_takes_nothing() -> None:
    """A reservation that would wait too long returns None and leaves the debt unchanged."""
    bucket = TokenBucket(10.0, 1)
    assert bucket.reserve(0.0, max_wait_seconds=0.15) == 0.0
    assert bucket.reserve(0.0, max_wait_seconds=0.15) == pytest.approx(0.1)
    assert bucket.reserve(0.0, max_wait_seconds=0.15) is None
    assert bucket.available(0.0) == pytest.approx(-1.0)


def test_bucket_rejects_impossible_settings() -> None:
    """Zero rate, zero burst, or taking more than the burst are errors."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, 0)
    with pytest.raises(ValueError, match="tokens at a time"):
        TokenBucket(1.0, 2).try_take(0.0, 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  0 ", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Sat, 14 Jun 2025 15:00:30 GMT", 30.0),  # IMF-fixdate
        ("Saturday, 14-Jun-25 15:02:00 GMT", 120.0),  # obsolete RFC 850
        ("Sat Jun 14 15:00:05 2025", 5.0),  # obsolete asctime, no zone: GMT
        ("Sat, 14 Jun 2025 14:00:00 GMT", 0.0),  # in the past
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
    ],
)
def test_retry_after_both_forms(value: str, expected: float) -> None:
    """Delta-seconds and HTTP-dates give the delay from now; the past gives 0."""
    assert parse_retry_after(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "soon", "12 seconds", "1e3", "inf", "nan", "0x10", "Mon, 32 Jun 2025 10:00:00 GMT"],
)
def test_retry_after_garbage_is_none(value: str) -> None:
    """Anything that is neither delta-seconds nor an HTTP-date gives None."""
    assert parse_retry_after(value, now=NOW) is None


def test_retry_after_naive_now_is_utc_and_cap_applies() -> None:
    """A naive ``now`` is read as UTC, and ``max_seconds`` caps a far-off date."""
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Sat, 14 Jun 2025 15:01:00 GMT", now=naive) == 60.0
    far = (NOW + timedelta(days=365)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(far, now=NOW, max_seconds=3600.0) == 3600.0


async def test_in_process_limiter_refuses_a_wait_over_the_max() -> None:
    """acquire raises RateLimitWaitTooLongError at once, with a retry hint, taking nothing."""
    now = [0.0]
    limiter = InProcessRateLimiter(max_wait_seconds=1.0, clock=lambda: now[0])
    await limiter.acquire("slow", rate_per_second=0.1, burst=1)
    with pytest.raises(RateLimitWaitTooLongError) as caught:
        await limiter.acquire("slow", rate_per_second=0.1, burst=1)
    assert caught.value.retry_after_seconds == pytest.approx(10.0)
    now[0] = 10.0
    await limiter.acquire("slow", rate_per_second=0.1, burst=1)


async def test_in_process_limiter_keeps_keys_apart() -> None:
    """One provider's empty bucket does not slow another's."""
    limiter = InProcessRateLimiter(max_wait_seconds=0.0, clock=lambda: 0.0)
    await limiter.acquire("a", rate_per_second=1.0, burst=1)
    await limiter.acquire("b", rate_per_second=1.0, burst=1)
    with pytest.raises(RateLimitWaitTooLongError):
        await limiter.acquire("a", rate_per_second=1.0, burst=1)


async def test_update_breaker_persists_only_changes() -> None:
    """update_breaker saves a changed snapshot and skips the write when nothing changed."""
    now = [0.0]
    store = InProcessBreakerStore(clock=lambda: now[0])
    config = BreakerConfig(failure_threshold=2, cooldown_seconds=5.0)
    assert await update_breaker(store, "p", config=config, change=lambda b, t: b.allow(t))
    assert (await store.load("p")).version == 0  # closed allow changes nothing
    for _ in range(2):
        await update_breaker(store, "p", config=config, change=lambda b, t: b.record_failure(t))
    record = await store.load("p")
    assert record.version == 2
    assert record.breaker(config).state(record.now) is BreakerState.OPEN
    assert not await update_breaker(store, "p", config=config, change=lambda b, t: b.allow(t))
    now[0] = 5.0
    assert await update_breaker(store, "p", config=config, change=lambda b, t: b.allow(t))
    assert not await update_breaker(store, "p", config=config, change=lambda b, t: b.allow(t))


async def test_breaker_store_compare_and_set() -> None:
    """A save against a stale version is refused."""
    store = InProcessBreakerStore()
    assert await store.save("p", {"x": 1}, expected_version=0)
    assert not await store.save("p", {"x": 2}, expected_version=0)
    record = await store.load("p")
    assert record.snapshot == {"x": 1}
    assert record.version == 1
    assert math.isfinite(record.now)
