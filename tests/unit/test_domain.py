"""Pure domain logic: the delivery state machine, the retry policy, public ids."""

from __future__ import annotations

import random
import uuid

import pytest

from guestcomms.domain.enums import CLAIMABLE, DeliveryStatus, Priority
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, new_id, to_public
from guestcomms.domain.retry import RetryPolicy
from guestcomms.domain.states import (
    TERMINAL,
    IllegalTransitionError,
    can_transition,
    check_transition,
    sources_of,
)

S = DeliveryStatus


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.QUEUED, S.SENDING),
        (S.SCHEDULED, S.SENDING),
        (S.RETRYING, S.SENDING),
        (S.SENDING, S.SENT),
        (S.SENDING, S.RETRYING),
        (S.SENDING, S.QUEUED),
        (S.SENT, S.DELIVERED),
        (S.DELIVERED, S.BOUNCED),
        (S.DEAD, S.QUEUED),
    ],
)
def test_legal_transitions_are_allowed(current: S, target: S) -> None:
    """The moves of a delivery's normal life are accepted."""
    assert check_transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.SENT, S.QUEUED),
        (S.SENT, S.SENDING),
        (S.CANCELLED, S.SENDING),
        (S.DELIVERED, S.SENT),
        (S.FAILED, S.QUEUED),
        (S.QUEUED, S.SENT),
        (S.BLOCKED, S.SENDING),
    ],
)
def test_illegal_transitions_are_rejected(current: S, target: S) -> None:
    """A delivery never moves backwards or skips the claim."""
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransitionError, match=f"from {current} to {target}"):
        check_transition(current, target)


def test_terminal_statuses_have_no_way_out() -> None:
    """Failed, cancelled, blocked and complained are final."""
    assert {S.FAILED, S.CANCELLED, S.BLOCKED, S.COMPLAINED} == TERMINAL
    assert all(not can_transition(t, other) for t in TERMINAL for other in S)


def test_claimable_statuses_all_lead_to_sending() -> None:
    """Every status the claim query selects may legally move to sending."""
    assert set(CLAIMABLE) <= sources_of(S.SENDING)


def test_backoff_grows_and_is_capped() -> None:
    """Full-jitter delays stay within base*2^(n-1), capped at the maximum."""
    policy = RetryPolicy(max_attempts=20, base_delay_seconds=1.0, max_delay_seconds=30.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(30.0, 2 ** (attempt - 1))
        delays = [policy.decide(attempt, transient=True, rng=rng).delay_seconds for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range


def test_retry_after_is_a_floor() -> None:
    """A provider's Retry-After is never undercut by the jittered delay."""
    policy = RetryPolicy(base_delay_seconds=0.1, max_delay_seconds=1.0)
    decision = policy.decide(1, transient=True, retry_after_seconds=42.0)
    assert decision.retry
    assert decision.delay_seconds == 42.0


def test_permanent_and_exhausted_failures_are_not_retried() -> None:
    """Only transient failures are retried, and only up to max_attempts."""
    policy = RetryPolicy(max_attempts=3)
    assert not policy.decide(1, transient=False).retry
    assert policy.decide(2, transient=True).retry
    assert not policy.decide(3, transient=True).retry


def test_public_ids_round_trip_and_check_their_kind() -> None:
    """A public id parses back to its key and is refused as another kind."""
    key = new_id()
    text = to_public(IdKind.MESSAGE, key)
    assert text.startswith("msg_")
    assert from_public(IdKind.MESSAGE, text) == key
    with pytest.raises(InvalidIdError):
        from_public(IdKind.CONTACT, text)
    with pytest.raises(InvalidIdError):
        from_public(IdKind.MESSAGE, "msg_nothex")


def test_new_ids_are_time_ordered() -> None:
    """UUIDv7 keys sort in creation order, which the cursors rely on."""
    ids = [new_id() for _ in range(1000)]
    assert ids == sorted(ids)
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)


def test_priority_names_order_emergency_first() -> None:
    """emergency < high < normal < low in claim order."""
    names = ["low", "emergency", "normal", "high"]
    assert sorted(names, key=Priority.from_name) == [
        "emergency",
        "high",
        "normal",
        "low",
    ]
