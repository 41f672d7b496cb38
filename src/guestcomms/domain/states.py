"""The delivery state machine: which status may follow which.

Every status change in the code goes through :func:`check_transition`, so an illegal move
(a sent delivery going back to queued, a cancelled one being sent) fails loudly instead of
corrupting history.
"""

from __future__ import annotations

from guestcomms.domain.enums import DeliveryStatus as S

_ALLOWED: dict[S, frozenset[S]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.SENDING, S.CANCELLED, S.BLOCKED, S.HELD}),
    S.QUEUED: frozenset({S.SENDING, S.CANCELLED, S.BLOCKED, S.HELD}),
    S.RETRYING: frozenset({S.SENDING, S.CANCELLED, S.DEAD, S.HELD}),
    # a paused campaign's unclaimed deliveries wait here, out of the claim's reach
    S.HELD: frozenset({S.QUEUED, S.SCHEDULED, S.CANCELLED}),
    # from sending: an outcome, back to the queue when a lease expires or a worker stops,
    # or deferred (scheduled) by quiet hours or a frequency cap
    S.SENDING: frozenset({S.SENT, S.RETRYING, S.FAILED, S.DEAD, S.BLOCKED, S.QUEUED, S.SCHEDULED}),
    S.SENT: frozenset({S.DELIVERED, S.BOUNCED, S.COMPLAINED, S.FAILED}),
    S.DELIVERED: frozenset({S.BOUNCED, S.COMPLAINED}),
    S.BOUNCED: frozenset({S.COMPLAINED}),
    S.COMPLAINED: frozenset(),
    S.FAILED: frozenset(),
    S.DEAD: frozenset({S.QUEUED}),  # an operator's replay
    S.CANCELLED: frozenset(),
    S.BLOCKED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in _ALLOWED.items() if not nxt)


class IllegalTransitionError(ValueError):
    """A delivery was asked to move to a status that may not follow its current one."""


def can_transition(current: S, target: S) -> bool:
    """Return whether ``target`` may follow ``current``."""
    return target in _ALLOWED[current]


def check_transition(current: S, target: S) -> S:
    """Return ``target`` if it may follow ``current``; raise ``IllegalTransitionError`` if not."""
    if not can_transition(current, target):
        raise IllegalTransitionError(f"delivery cannot move from {current} to {target}")
    return target


def sources_of(target: S) -> frozenset[S]:
    """Every status from which ``target`` may be reached (used to guard bulk updates)."""
    return frozenset(s for s, nxt in _ALLOWED.items() if target in nxt)
