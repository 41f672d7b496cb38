"""Send-time optimisation: when each guest engages, and the best slot for each within a window.

**The model.** A guest's engagement is a distribution over the 168 hours of the week in *their
own* zone (:func:`hour_of_week`: 0 is Monday 00:00-00:59 local, 167 is Sunday 23:00-23:59),
learned from the instants of their opens and clicks. Each observation is spread by a fixed
kernel (:data:`KERNEL`) before counting: half of it stays on that day, half is pooled over the
same local hour on all seven days (routines are mostly daily), and within each part the hour
keeps 1/2 and each neighbouring hour gets 1/4 (an open at 19:00 is evidence for 18:00 and
20:00 too). The week is circular: Sunday 23:00 neighbours Monday 00:00.

**Shrinkage.** With ``n`` observations whose smoothed counts are ``c`` and a prior pattern
``p`` worth ``k`` observations, the posterior is ``(c + k * p) / (n + k)`` (the mean of a
Dirichlet posterior). Patterns are nested: the organization's, pooled over all its contacts,
shrinks towards the flat pattern (:data:`ORGANIZATION_PRIOR_STRENGTH`); an event's, pooled over
its guests, towards the organization's (:data:`EVENT_PRIOR_STRENGTH`); a contact's towards the
event's, or the organization's without an event (:data:`CONTACT_PRIOR_STRENGTH`). A contact
with no history gets the prior exactly.

**Planning.** :func:`plan_send_times` cuts a UTC window into slots, scores each slot for each
guest by their profile's weight at the slot's local hour of the week, and assigns every guest
a slot with no slot taking more than ``ceil(max_share * N)`` guests (the spreading rule is on
:func:`plan_send_times`). Each :class:`SendChoice` carries its score and confidence, so a
delivery can show why it went when it did.

Pure: the standard library's ``zoneinfo`` and nothing of ours outside ``guestcomms.domain``.
docs/send-time.md has the measured effect on a simulated population.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

K = TypeVar("K", bound=Hashable)

HOURS_PER_WEEK = 168
HOURS_PER_DAY = 24
DAILY_SHARE = 0.5  # of an observation, pooled over the same local hour on all 7 days
NEIGHBOUR_SHARE = 0.25  # of each part of an observation, given to each adjacent hour (±1 h)

# Prior strengths, in observations' worth. An organization has thousands of opens, so its own
# data dominates the flat pattern almost at once; an event's few hundred still outweigh 24; a
# contact's own pattern counts for half of theirs at 6 opens and clicks (tuned on the
# simulation in bench/send_time_sim.py: 3 to 12 land within about a point).
ORGANIZATION_PRIOR_STRENGTH = 24.0
EVENT_PRIOR_STRENGTH = 24.0
CONTACT_PRIOR_STRENGTH = 6.0

MAX_SLOTS = 4 * HOURS_PER_WEEK  # four weeks of hourly slots: more is a mistake, not a campaign
_WEIGHT_SUM_TOLERANCE = 1e-9


class SendTimeError(ValueError):
    """A send-time profile, window or option is invalid; the message names what is wrong."""


class SlotCapacityError(SendTimeError):
    """The window's slots cannot hold every guest at the maximum share per slot."""


def _kernel() -> tuple[float, ...]:
    """The spread of one observation at hour-of-week 0 (shift it to place another hour)."""
    kernel = [0.0] * HOURS_PER_WEEK
    parts = [(0, 1.0 - DAILY_SHARE)] + [(day * HOURS_PER_DAY, DAILY_SHARE / 7) for day in range(7)]
    centre_share = 1.0 - 2 * NEIGHBOUR_SHARE
    for offset, share in parts:
        kernel[offset] += share * centre_share
        kernel[(offset + 1) % HOURS_PER_WEEK] += share * NEIGHBOUR_SHARE
        kernel[(offset - 1) % HOURS_PER_WEEK] += share * NEIGHBOUR_SHARE
    return tuple(kernel)


KERNEL = _kernel()  # sums to 1; KERNEL[o] is the share of an observation that lands o hours later
_KERNEL_TERMS = tuple((offset, share) for offset, share in enumerate(KERNEL) if share > 0)


def hour_of_week(instant_utc: datetime, zone: ZoneInfo) -> int:
    """Return the local hour of the week of an aware instant in ``zone``: 0 (Mon 00h) to 167.

    The hour is the wall clock's hour at that instant: in a zone offset by a part of an hour
    (Asia/Kolkata, +05:30) 13:00 UTC is 18:30 local, hour 18 of its day. A fall-back overlap's
    repeated hour maps both of its instants to the same hour; a spring-forward gap's missing
    hour is never returned. Raises SendTimeError for a naive datetime.
    """
    if instant_utc.tzinfo is None or instant_utc.utcoffset() is None:
        raise SendTimeError("instant: must be an aware datetime (UTC)")
    local = instant_utc.astimezone(zone)
    return local.weekday() * HOURS_PER_DAY + local.hour


@dataclass(frozen=True, slots=True)
class HourCounts:
    """Raw observations per local hour of the week (168 values), before smoothing.

    Counts from several contacts add up (``a + b``), each already in its contact's own zone,
    which is how an event's or an organization's pattern is pooled.
    """

    counts: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != HOURS_PER_WEEK:
            raise SendTimeError(f"counts: must have {HOURS_PER_WEEK} values")
        if any(not math.isfinite(value) or value < 0 for value in self.counts):
            raise SendTimeError("counts: must be finite and non-negative")

    @classmethod
    def empty(cls) -> HourCounts:
        """No observations."""
        return cls((0.0,) * HOURS_PER_WEEK)

    @property
    def total(self) -> float:
        """The number of observations."""
        return math.fsum(self.counts)

    def __add__(self, other: HourCounts) -> HourCounts:
        return HourCounts(tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)))


def count_hours(events: Iterable[datetime], zone: ZoneInfo) -> HourCounts:
    """Count one contact's engagement instants (opens, clicks) by local hour of the week.

    Callers pass each engagement once (an open and a click of the same message are two
    observations of the same moment; pass the first if they should count once). Raises
    SendTimeError for a naive datetime.
    """
    counts = [0.0] * HOURS_PER_WEEK
    for event in events:
        counts[hour_of_week(event, zone)] += 1.0
    return HourCounts(tuple(counts))


@dataclass(frozen=True, slots=True)
class EngagementProfile:
    """When someone engages: 168 weights (local hours of the week) that sum to 1.

    ``evidence`` is the number of this profile's own observations (0 for a profile that is
    only its prior); ``prior_strength`` the observations' worth of the prior it was shrunk to.
    Build one with :func:`learn`, :func:`learn_pooled` or :func:`flat_profile`.
    """

    weights: tuple[float, ...]
    evidence: float = 0.0
    prior_strength: float = 0.0

    def __post_init__(self) -> None:
        if len(self.weights) != HOURS_PER_WEEK:
            raise SendTimeError(f"weights: must have {HOURS_PER_WEEK} values")
        if any(not math.isfinite(value) or value < 0 for value in self.weights):
            raise SendTimeError("weights: must be finite and non-negative")
        if abs(math.fsum(self.weights) - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise SendTimeError("weights: must sum to 1")
        for name in ("evidence", "prior_strength"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SendTimeError(f"{name}: must be finite and non-negative")

    @property
    def own_share(self) -> float:
        """``n / (n + k)``: the share of the weights that comes from the profile's own data."""
        total = self.evidence + self.prior_strength
        return self.evidence / total if total > 0 else 0.0

    @property
    def best_hour(self) -> int:
        """The hour of the week with the largest weight (the earliest of equals)."""
        return max(range(HOURS_PER_WEEK), key=self.weights.__getitem__)


def flat_profile() -> EngagementProfile:
    """Every hour of the week equally likely: the root of the hierarchy, with no evidence."""
    return EngagementProfile((1.0 / HOURS_PER_WEEK,) * HOURS_PER_WEEK)


def posterior(
    counts: HourCounts, *, prior: EngagementProfile, prior_strength: float
) -> EngagementProfile:
    """Return ``(KERNEL * counts + k * prior) / (n + k)``, the profile shrunk towards ``prior``.

    With no observations the result has exactly the prior's weights and ``evidence`` 0, for
    any ``prior_strength``; with ``prior_strength`` 0 it is the smoothed counts alone.
    Raises SendTimeError for a negative or non-finite ``prior_strength``.
    """
    if not math.isfinite(prior_strength) or prior_strength < 0:
        raise SendTimeError("prior_strength: must be finite and non-negative")
    n = counts.total
    if n == 0:
        return EngagementProfile(prior.weights, evidence=0.0, prior_strength=prior_strength)
    smoothed = [0.0] * HOURS_PER_WEEK
    for hour, count in enumerate(counts.counts):
        if count:
            for offset, share in _KERNEL_TERMS:
                smoothed[(hour + offset) % HOURS_PER_WEEK] += count * share
    denominator = n + prior_strength
    weights = [
        (value + prior_strength * base) / denominator
        for value, base in zip(smoothed, prior.weights, strict=True)
    ]
    # Renormalise away rounding so the weights sum to 1 within the profile's tolerance.
    total = math.fsum(weights)
    return EngagementProfile(
        tuple(value / total for value in weights), evidence=n, prior_strength=prior_strength
    )


def learn(
    events: Iterable[datetime],
    zone: ZoneInfo,
    *,
    prior: EngagementProfile,
    prior_strength: float = CONTACT_PRIOR_STRENGTH,
) -> EngagementProfile:
    """Learn one contact's profile from their engagement instants, shrunk towards ``prior``.

    ``prior`` is the event's pattern (or the organization's for a contact of no event); a
    contact with no history gets exactly ``prior``'s weights and ``evidence`` 0, which
    :func:`plan_send_times` reports as a fallback. Raises SendTimeError on a naive instant.
    """
    return posterior(count_hours(events, zone), prior=prior, prior_strength=prior_strength)


def learn_pooled(
    histories: Iterable[tuple[Iterable[datetime], ZoneInfo]],
    *,
    prior: EngagementProfile,
    prior_strength: float,
) -> EngagementProfile:
    """Learn a population's pattern (an event's, an organization's) from its contacts' histories.

    Each history is ``(instants, that contact's zone)``; every engagement counts once, in its
    contact's own local time, so a contact who engages more weighs more. Pass the
    organization's pattern as ``prior`` for an event (:data:`EVENT_PRIOR_STRENGTH`) and
    :func:`flat_profile` for the organization (:data:`ORGANIZATION_PRIOR_STRENGTH`).
    """
    counts = HourCounts.empty()
    for events, zone in histories:
        counts += count_hours(events, zone)
    return posterior(counts, prior=prior, prior_strength=prior_strength)


@dataclass(frozen=True, slots=True)
class GuestInput(Generic[K]):
    """One guest to plan: a key of the caller's (a contact id), their zone and their profile."""

    key: K
    zone: ZoneInfo
    profile: EngagementProfile


@dataclass(frozen=True, slots=True)
class SendChoice:
    """When one guest's message goes out, and why.

    - ``send_at``: the slot's start, an aware UTC instant inside the window.
    - ``hour_of_week``: that instant's local hour of the week in the guest's zone.
    - ``score``: the profile's weight at that hour times 168, i.e. how many times likelier the
      guest is to engage then than at an hour picked at random (1.0: no better).
    - ``confidence``: the profile's :attr:`~EngagementProfile.own_share`, ``n / (n + k)``, the
      share of the decision resting on the guest's own history (0 for a fallback).
    - ``fallback``: the guest had no history, so the choice is the event's or organization's.
    - ``displaced``: the per-slot cap moved the guest off their best slot in the window.
    """

    send_at: datetime
    hour_of_week: int
    score: float
    confidence: float
    fallback: bool
    displaced: bool


def window_slots(
    window_start: datetime, window_end: datetime, *, slot: timedelta = timedelta(hours=1)
) -> list[datetime]:
    """Return the UTC starts of the slots ``window_start + i * slot`` before ``window_end``.

    The last slot may be cut short by the window's end; its start is still inside. Raises
    SendTimeError for naive instants, an empty window, a non-positive slot or more than
    :data:`MAX_SLOTS` slots.
    """
    for name, value in (("window_start", window_start), ("window_end", window_end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise SendTimeError(f"{name}: must be an aware datetime")
    if slot <= timedelta(0):
        raise SendTimeError("slot: must be a positive duration")
    start, end = window_start.astimezone(UTC), window_end.astimezone(UTC)
    if end <= start:
        raise SendTimeError("window_end: must be after window_start")
    full, rest = divmod(end - start, slot)
    count = full + (1 if rest else 0)
    if count > MAX_SLOTS:
        raise SendTimeError(f"window: {count} slots, more than {MAX_SLOTS}")
    return [start + index * slot for index in range(count)]


def plan_send_times(
    guests: Sequence[GuestInput[K]],
    *,
    window_start: datetime,
    window_end: datetime,
    slot: timedelta = timedelta(hours=1),
    max_share: float,
) -> dict[K, SendChoice]:
    """Choose each guest's send slot within ``[window_start, window_end)``, spread by a cap.

    Each guest ranks the slots (:func:`window_slots`) by their profile's weight at the slot's
    local hour of the week in their own zone, the earlier slot first among equals (so a local
    hour repeated by a fall-back overlap is tried at its first instant, and a local hour lost
    to a spring-forward gap is never chosen: no slot maps to it). No slot takes more than
    ``ceil(max_share * len(guests))`` guests.

    The spreading rule is deferred acceptance (Gale-Shapley, guests proposing): every guest
    asks for their best slot; a slot over its cap keeps the guests who would lose the most by
    moving (their weight here minus their weight at their next-ranked slot) and turns away
    the one who would lose least (the later in ``guests`` among equals), who asks for their
    next slot. The result is deterministic, does not depend on the order in which guests ask,
    and leaves no guest and slot that would both rather be matched with each other.

    Returns ``{key: SendChoice}`` in the order of ``guests``. Raises SendTimeError for a
    duplicate key, a ``max_share`` outside (0, 1] or a bad window, and SlotCapacityError
    when ``max_share * slots < 1`` (the slots cannot hold everyone, whatever the audience).
    """
    slots = window_slots(window_start, window_end, slot=slot)
    if not (math.isfinite(max_share) and 0 < max_share <= 1):
        raise SendTimeError("max_share: must be in (0, 1]")
    if max_share * len(slots) < 1:
        raise SlotCapacityError(
            f"max_share: {max_share} of the campaign per slot over {len(slots)} slots cannot "
            f"place every guest; widen the window or raise max_share to at least "
            f"{1 / len(slots):.4f}"
        )
    if len({guest.key for guest in guests}) != len(guests):
        raise SendTimeError("guests: keys must be unique")
    cap = math.ceil(max_share * len(guests))
    hours_by_zone: dict[ZoneInfo, list[int]] = {}
    scores: list[list[float]] = []
    ranks: list[list[int]] = []
    for guest in guests:
        hours = hours_by_zone.get(guest.zone)
        if hours is None:
            hours = hours_by_zone[guest.zone] = [hour_of_week(s, guest.zone) for s in slots]
        weights = guest.profile.weights
        row = [weights[hour] for hour in hours]
        scores.append(row)
        # Stable even reversed: equal weights keep the earlier slot first.
        ranks.append(sorted(range(len(slots)), key=row.__getitem__, reverse=True))
    position = _deferred_acceptance(scores, ranks, cap=cap)
    plan: dict[K, SendChoice] = {}
    for index, guest in enumerate(guests):
        chosen = ranks[index][position[index]]
        hour = hours_by_zone[guest.zone][chosen]
        plan[guest.key] = SendChoice(
            send_at=slots[chosen],
            hour_of_week=hour,
            score=guest.profile.weights[hour] * HOURS_PER_WEEK,
            confidence=guest.profile.own_share,
            fallback=guest.profile.evidence == 0,
            displaced=position[index] > 0,
        )
    return plan


def _deferred_acceptance(
    scores: list[list[float]], ranks: list[list[int]], *, cap: int
) -> list[int]:
    """Return, per guest, the position in their ranking of the slot they end up in.

    ``scores[g][s]`` is guest g's weight at slot s and ``ranks[g]`` their slots best first.
    The caller guarantees ``cap * slots >= guests``, so nobody runs out of slots: a guest
    turned away by every slot would mean every slot full, ``cap * slots`` others placed.
    """
    slot_count = len(ranks[0]) if ranks else 0
    held: list[list[tuple[float, int]]] = [[] for _ in range(slot_count)]
    position = [0] * len(ranks)
    waiting = list(range(len(ranks) - 1, -1, -1))  # a stack: guest 0 asks first
    while waiting:
        guest = waiting.pop()
        rank, at = ranks[guest], position[guest]
        wanted = rank[at]
        # What the guest would lose by moving on; at their last slot, everything.
        loss = (
            scores[guest][wanted] - scores[guest][rank[at + 1]] if at + 1 < slot_count else math.inf
        )
        # A min-heap: the root is the guest who loses least, the later one among equals.
        heapq.heappush(held[wanted], (loss, -guest))
        if len(held[wanted]) > cap:
            _, turned_away = heapq.heappop(held[wanted])
            position[-turned_away] += 1
            if position[-turned_away] >= slot_count:
                raise SlotCapacityError  # unreachable while cap * slots >= guests
            waiting.append(-turned_away)
    return position
