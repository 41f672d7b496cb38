"""The circuit breaker state machine, on a clock the tests control."""

from __future__ import annotations

import json

import pytest

from guestcomms.domain.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    InvalidBreakerSnapshotError,
)

CONFIG = BreakerConfig(
    failure_threshold=3,
    cooldown_seconds=10.0,
    half_open_probes=2,
    success_threshold=1,
    probe_timeout_seconds=5.0,
)


def opened(config: BreakerConfig = CONFIG, *, at: float = 100.0) -> CircuitBreaker:
    """A breaker that has just opened at ``at``."""
    breaker = CircuitBreaker(config)
    for _ in range(config.failure_threshold):
        breaker.record_failure(at)
    assert breaker.state(at) is BreakerState.OPEN
    return breaker


def test_starts_closed_and_allows() -> None:
    """A new breaker is closed and lets every call through."""
    breaker = CircuitBreaker(CONFIG)
    assert breaker.state(0.0) is BreakerState.CLOSED
    assert all(breaker.allow(0.0) for _ in range(100))


def test_opens_after_threshold_consecutive_failures() -> None:
    """It opens on the failure_threshold-th consecutive failure, not before."""
    breaker = CircuitBreaker(CONFIG)
    breaker.record_failure(1.0)
    breaker.record_failure(2.0)
    assert breaker.state(2.0) is BreakerState.CLOSED
    breaker.record_failure(3.0)
    assert breaker.state(3.0) is BreakerState.OPEN
    assert not breaker.allow(3.0)
    assert breaker.half_open_at() == 13.0


def test_success_resets_the_consecutive_count() -> None:
    """A success between failures keeps a flaky provider closed."""
    breaker = CircuitBreaker(CONFIG)
    for t in range(30):
        if t % 3 == 2:
            breaker.record_success(float(t))
        else:
            breaker.record_failure(float(t))
    assert breaker.state(30.0) is BreakerState.CLOSED


def test_open_refuses_until_cooldown_then_half_opens() -> None:
    """Open refuses every call during the cool-down and reads half-open once it is over."""
    breaker = opened(at=100.0)
    assert not breaker.allow(109.999)
    assert not breaker.available(109.999)
    assert breaker.state(110.0) is BreakerState.HALF_OPEN
    assert breaker.available(110.0)


def test_half_open_limits_concurrent_probes() -> None:
    """Half-open lets only half_open_probes trial calls through at once."""
    breaker = opened(at=100.0)
    assert breaker.allow(110.0)
    assert breaker.allow(110.1)
    assert not breaker.allow(110.2)
    assert not breaker.available(110.2)
    breaker.release(110.3)
    assert breaker.allow(110.4)


def test_unanswered_probe_lapses() -> None:
    """A probe reservation nobody answers frees its slot after probe_timeout_seconds."""
    breaker = opened(config=BreakerConfig(failure_threshold=1, probe_timeout_seconds=5.0))
    assert breaker.allow(130.0)
    assert not breaker.allow(134.9)
    assert breaker.allow(135.1)


def test_success_in_half_open_closes() -> None:
    """One successful probe closes the breaker (success_threshold=1)."""
    breaker = opened(at=100.0)
    assert breaker.allow(110.0)
    breaker.record_success(110.5)
    assert breaker.state(110.5) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.half_open_at() is None


def test_success_threshold_needs_several_successes() -> None:
    """With success_threshold=2 the breaker closes on the second trial success."""
    config = BreakerConfig(failure_threshold=1, cooldown_seconds=1.0, success_threshold=2)
    breaker = opened(config, at=0.0)
    assert breaker.allow(1.0)
    breaker.record_success(1.1)
    assert breaker.state(1.1) is BreakerState.HALF_OPEN
    assert breaker.allow(1.2)
    breaker.record_success(1.3)
    assert breaker.state(1.3) is BreakerState.CLOSED


def test_failure_in_half_open_reopens_with_a_new_cooldown() -> None:
    """A failed probe re-opens the breaker and restarts the cool-down from that moment."""
    breaker = opened(at=100.0)
    assert breaker.allow(110.0)
    breaker.record_failure(111.0)
    assert breaker.state(111.0) is BreakerState.OPEN
    assert breaker.state(120.9) is BreakerState.OPEN
    assert breaker.state(121.0) is BreakerState.HALF_OPEN


def test_late_results_while_open_change_nothing() -> None:
    """Answers to calls made before the breaker opened neither close it nor extend it."""
    breaker = opened(at=100.0)
    breaker.record_success(101.0)
    breaker.record_failure(105.0)
    assert breaker.state(105.0) is BreakerState.OPEN
    assert breaker.half_open_at() == 110.0


def test_release_counts_nothing() -> None:
    """release frees a probe slot without closing or re-opening the breaker."""
    breaker = opened(at=100.0)
    assert breaker.allow(110.0)
    breaker.release(110.1)
    assert breaker.state(110.1) is BreakerState.HALF_OPEN


def test_failover_lifecycle() -> None:
    """The acceptance story: opens within the threshold, half-opens after cool-down, closes."""
    breaker = CircuitBreaker(CONFIG)
    now = 0.0
    refused = 0
    for _ in range(1000):
        now += 0.01
        if breaker.allow(now):
            breaker.record_failure(now)  # the primary answers 500
        else:
            refused += 1
    assert breaker.state(now) is BreakerState.OPEN
    assert refused > 900  # only the threshold and the probes reached the failing primary
    now = breaker.half_open_at() or 0.0
    assert breaker.allow(now)
    breaker.record_success(now)  # the primary has recovered
    assert breaker.state(now) is BreakerState.CLOSED


def test_snapshot_round_trips_through_json() -> None:
    """to_dict/from_dict keep the state, counters, opened_at and probes."""
    breaker = opened(at=100.0)
    breaker.allow(110.0)
    data = json.loads(json.dumps(breaker.to_dict()))
    copy = CircuitBreaker.from_dict(data, config=CONFIG)
    assert copy.to_dict() == breaker.to_dict()
    assert copy.allow(110.1)
    assert not copy.allow(110.2)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": 99},
        {"format": 1, "state": "ajar"},
        {
            "format": 1,
            "state": "open",
            "consecutive_failures": 0,
            "opened_at": None,
            "probes": [],
            "half_open_successes": 0,
        },
        {
            "format": 1,
            "state": "closed",
            "consecutive_failures": -1,
            "opened_at": None,
            "probes": [],
            "half_open_successes": 0,
        },
        {
            "format": 1,
            "state": "closed",
            "consecutive_failures": 0,
            "opened_at": None,
            "probes": ["x"],
            "half_open_successes": 0,
        },
    ],
)
def test_bad_snapshots_are_refused(data: dict[str, object]) -> None:
    """A snapshot of the wrong shape raises InvalidBreakerSnapshotError."""
    with pytest.raises(InvalidBreakerSnapshotError):
        CircuitBreaker.from_dict(data)


def test_config_is_validated() -> None:
    """Thresholds below one are refused."""
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerConfig(failure_threshold=0)
