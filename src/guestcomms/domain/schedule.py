"""When a send happens: absolute instants, each guest's own wall-clock time, event-relative times.

A campaign carries a schedule as JSON; :meth:`Schedule.parse` turns it into a value and
:meth:`Schedule.instant` (or :func:`occurrences`, with a :class:`Recurrence`) turns that into
UTC instants for one recipient's zone. The shapes::

    {"at": "2026-06-01T09:00:00Z"}                      an absolute instant (must carry an offset)
    {"date": "2026-06-01", "local_time": "10:00"}       that wall-clock time in each guest's zone
    {"days_before_event": 14, "local_time": "10:00"}    14 days before the event's date, 10:00 in
                                                        each guest's zone ("days_after_event" too)
    {"hours_before_event": 2}                           2 hours before the event's start instant
                                                        ("hours_after_event" too)

The recipient's zone is chosen by :func:`resolve_zone`: the contact's zone, else the event's,
else the organization's, else UTC.

Wall-clock times that do not exist or happen twice (DST) follow one rule, in
:func:`local_to_utc`: a time in a spring-forward gap is moved forward by the length of the gap
(02:30 becomes 03:30 new time), and a time in a fall-back overlap is the earlier of its two
instants. docs/architecture.md ("Scheduling in each guest's own time") says the same.

Pure: the standard library's ``zoneinfo`` and nothing of ours outside ``guestcomms.domain``.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_T = TypeVar("_T")

MAX_EVENT_DAYS = 3660  # ten years either side of an event is already more than any campaign needs
MAX_EVENT_HOURS = MAX_EVENT_DAYS * 24
MAX_EVERY_DAYS = 366
MAX_RECURRENCE_COUNT = 1000
MAX_CONDITION_CHARS = 2000
CANCELLATION_KEY_MAX_CHARS = 200  # the width of deliveries.cancellation_key

# Strict shapes: date.fromisoformat and time.fromisoformat accept more than we document
# ("20260601", "10:00:00+01:00", "T10"), and a schedule stored today must mean the same thing
# after a Python upgrade, so we accept only the documented forms.
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RE = re.compile(r"\d{2}:\d{2}(:\d{2})?")

# Files under the zoneinfo directory that ZoneInfo() opens but that are not a place: "localtime"
# is the server's own zone, which must never leak into a guest's schedule.
_NOT_ZONES = frozenset({"localtime", "posixrules"})

_SCHEDULE_KEYS = frozenset(
    {
        "at",
        "date",
        "local_time",
        "days_before_event",
        "days_after_event",
        "hours_before_event",
        "hours_after_event",
    }
)
_ANCHOR_KEYS = (
    "at, date, days_before_event, days_after_event, hours_before_event, hours_after_event"
)
_RECURRENCE_KEYS = frozenset({"every_days", "count", "until", "until_days_before_event", "while"})


class ScheduleError(ValueError):
    """A schedule or recurrence is invalid; the message starts with the offending field."""


class ScheduleKind(StrEnum):
    """The four shapes a schedule can take."""

    ABSOLUTE = "absolute"  # one instant for everyone
    LOCAL = "local"  # a date and a wall-clock time in each recipient's zone
    EVENT_LOCAL = "event_local"  # N days from the event's date, a wall-clock time per recipient
    EVENT_OFFSET = "event_offset"  # a fixed duration from the event's start instant


def resolve_zone(*candidates: str | None) -> ZoneInfo:
    """Return the zone of the first candidate that names a valid IANA zone, else UTC.

    Callers pass the contact's zone, then the event's, then the organization's; ``None``,
    blank and unknown names are skipped (a guest with a typo in their zone still gets the
    event's time rather than an error).
    """
    for name in candidates:
        if name is None or not name.strip() or name.strip() in _NOT_ZONES:
            continue
        try:
            return ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # ValueError: a malformed key such as "../x"; OSError: a directory such as "America".
            continue
    return ZoneInfo("UTC")


def local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the UTC instant at which the wall clock in ``zone`` reads ``day`` ``at``.

    - A wall time that exists once maps to that instant.
    - **Gap** (clocks spring forward, the wall time never happens): the time moves forward by
      the length of the gap, i.e. it is read with the offset in force before the jump. In
      America/Los_Angeles on 2026-03-08, 02:30 becomes 03:30 PDT (10:30 UTC). This matches
      RFC 5545 and pytz's ``normalize``: the send happens shortly after the requested time,
      never before it (a whole day skipped at the date line, as in Pacific/Apia on 2011-12-30,
      moves to the same time the next day).
    - **Overlap** (clocks fall back, the wall time happens twice): the first (earlier) instant.
      In America/Los_Angeles on 2026-11-01, 01:30 is 01:30 PDT (08:30 UTC), not PST.

    ``at`` must be a wall-clock time (no tzinfo); its ``fold`` is ignored. Raises ScheduleError
    otherwise. The result is an aware UTC datetime.
    """
    if at.tzinfo is not None:
        raise ScheduleError("schedule.local_time: must be a wall-clock time without an offset")
    # PEP 495: with fold=0 zoneinfo reads a wall time with the offset in force *before* a
    # transition. In an overlap that is the first of the two instants; in a gap it is the
    # pre-jump offset, which lands the instant after the jump at wall time + gap length. Both
    # are our policy, so fold=0 is all it takes (the unit tests check it against a brute-force
    # oracle over every zone).
    wall = datetime.combine(day, at.replace(fold=0), tzinfo=zone)
    return wall.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a campaign's message goes out, for one recipient zone at a time.

    Build it with :meth:`parse`. Fields by kind: ``at`` (ABSOLUTE); ``on`` and ``local_time``
    (LOCAL); ``event_days`` (signed, negative before the event) and ``local_time``
    (EVENT_LOCAL); ``event_offset`` (signed duration from the event's start, EVENT_OFFSET).
    """

    kind: ScheduleKind
    at: datetime | None = None
    on: date | None = None
    local_time: time | None = None
    event_days: int | None = None
    event_offset: timedelta | None = None

    def __post_init__(self) -> None:
        # Values built by hand (not by parse) must still carry the fields their kind reads.
        needed = {
            ScheduleKind.ABSOLUTE: (self.at,),
            ScheduleKind.LOCAL: (self.on, self.local_time),
            ScheduleKind.EVENT_LOCAL: (self.event_days, self.local_time),
            ScheduleKind.EVENT_OFFSET: (self.event_offset,),
        }[self.kind]
        if any(value is None for value in needed):
            raise ScheduleError(f"schedule: missing a field of a {self.kind} schedule")
        if self.at is not None and self.at.utcoffset() is None:
            raise ScheduleError("schedule.at: must carry a UTC offset")

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Schedule:
        """Parse a campaign's schedule JSON; raise ScheduleError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ScheduleError("schedule: must be an object")
        _reject_unknown(data, _SCHEDULE_KEYS, "schedule")
        anchor = _anchor(data)
        wants_local_time = anchor in {"date", "days"}
        if wants_local_time and "local_time" not in data:
            raise ScheduleError("schedule.local_time: required with date and days_*_event")
        if not wants_local_time and "local_time" in data:
            raise ScheduleError("schedule.local_time: not allowed with at or hours_*_event")
        if anchor == "at":
            return cls(kind=ScheduleKind.ABSOLUTE, at=_instant(data["at"], "schedule.at"))
        if anchor == "date":
            return cls(
                kind=ScheduleKind.LOCAL,
                on=_date(data["date"], "schedule.date"),
                local_time=_time(data["local_time"], "schedule.local_time"),
            )
        if anchor == "days":
            before = "days_before_event" in data
            key = "days_before_event" if before else "days_after_event"
            days = _int(data[key], f"schedule.{key}", minimum=0, maximum=MAX_EVENT_DAYS)
            return cls(
                kind=ScheduleKind.EVENT_LOCAL,
                event_days=-days if before else days,
                local_time=_time(data["local_time"], "schedule.local_time"),
            )
        before = "hours_before_event" in data
        key = "hours_before_event" if before else "hours_after_event"
        hours = _number(data[key], f"schedule.{key}", maximum=MAX_EVENT_HOURS)
        offset = timedelta(hours=hours)
        return cls(kind=ScheduleKind.EVENT_OFFSET, event_offset=-offset if before else offset)

    def to_json(self) -> dict[str, Any]:
        """Return the canonical JSON form, which :meth:`parse` reads back to an equal value."""
        if self.kind is ScheduleKind.ABSOLUTE:
            return {"at": _set(self.at).isoformat().replace("+00:00", "Z")}
        if self.kind is ScheduleKind.LOCAL:
            local_time = _time_text(_set(self.local_time))
            return {"date": _set(self.on).isoformat(), "local_time": local_time}
        if self.kind is ScheduleKind.EVENT_LOCAL:
            days = _set(self.event_days)
            key = "days_before_event" if days < 0 else "days_after_event"
            return {key: abs(days), "local_time": _time_text(_set(self.local_time))}
        offset = _set(self.event_offset)
        key = "hours_before_event" if offset < timedelta(0) else "hours_after_event"
        hours = abs(offset) / timedelta(hours=1)
        return {key: int(hours) if hours.is_integer() else hours}

    @property
    def needs_event(self) -> bool:
        """Whether :meth:`instant` needs the event (its date or its start instant)."""
        return self.kind in {ScheduleKind.EVENT_LOCAL, ScheduleKind.EVENT_OFFSET}

    @property
    def is_local(self) -> bool:
        """Whether the instant depends on the recipient's zone (so callers cache per zone)."""
        return self.kind in {ScheduleKind.LOCAL, ScheduleKind.EVENT_LOCAL}

    def instant(
        self,
        *,
        zone: ZoneInfo,
        event_date: date | None = None,
        event_start: datetime | None = None,
    ) -> datetime:
        """Return the UTC instant of this schedule for a recipient in ``zone``.

        ``event_date`` (the event's calendar date, in the event's own zone) is needed by
        EVENT_LOCAL schedules, ``event_start`` (an aware instant) by EVENT_OFFSET ones; a
        missing one raises ScheduleError. Wall-clock times follow :func:`local_to_utc`.
        """
        wall = self.wall_clock(event_date=event_date)
        if wall is not None:
            return local_to_utc(wall[0], wall[1], zone)
        if self.kind is ScheduleKind.ABSOLUTE:
            return _set(self.at)
        offset = _set(self.event_offset)
        if event_start is None or event_start.utcoffset() is None:
            key = "hours_before_event" if offset < timedelta(0) else "hours_after_event"
            raise ScheduleError(f"schedule.{key}: needs the event's start as an aware instant")
        return event_start.astimezone(UTC) + offset

    def wall_clock(self, *, event_date: date | None = None) -> tuple[date, time] | None:
        """Return the requested local (date, time) of a local schedule, else ``None``.

        This is the wall time asked for, before any DST gap moved it.
        """
        if self.kind is ScheduleKind.LOCAL:
            return _set(self.on), _set(self.local_time)
        if self.kind is ScheduleKind.EVENT_LOCAL:
            days = _set(self.event_days)
            if event_date is None:
                key = "days_before_event" if days < 0 else "days_after_event"
                raise ScheduleError(f"schedule.{key}: needs the event's date")
            return event_date + timedelta(days=days), _set(self.local_time)
        return None


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Repeat a schedule every ``every_days`` days up to a bound, optionally while a filter holds.

    Exactly one bound: ``count`` (occurrences in all, the first included, as RFC 5545 COUNT),
    ``until`` (an instant; occurrences at or before it) or ``until_days_before_event`` (no
    occurrence on a local date later than the event's date minus that many days).
    ``condition`` is the JSON's ``"while"``: audience-filter text kept as text here. It is
    evaluated elsewhere; when it stops holding for a guest, their pending occurrences are
    cancelled through :func:`cancellation_key`.
    """

    every_days: int
    count: int | None = None
    until: datetime | None = None
    until_days_before_event: int | None = None
    condition: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Recurrence:
        """Parse a campaign's recurrence JSON; raise ScheduleError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ScheduleError("recurrence: must be an object")
        _reject_unknown(data, _RECURRENCE_KEYS, "recurrence")
        if "every_days" not in data:
            raise ScheduleError("recurrence.every_days: required")
        every = _int(data["every_days"], "recurrence.every_days", minimum=1, maximum=MAX_EVERY_DAYS)
        bounds = [key for key in ("count", "until", "until_days_before_event") if key in data]
        if len(bounds) != 1:
            raise ScheduleError(
                "recurrence: give exactly one of count, until, until_days_before_event"
            )
        condition = data.get("while")
        if condition is not None and (
            not isinstance(condition, str)
            or not condition.strip()
            or len(condition) > MAX_CONDITION_CHARS
        ):
            raise ScheduleError(
                f"recurrence.while: must be non-empty filter text of at most "
                f"{MAX_CONDITION_CHARS} characters"
            )
        return cls(
            every_days=every,
            count=(
                _int(data["count"], "recurrence.count", minimum=1, maximum=MAX_RECURRENCE_COUNT)
                if "count" in data
                else None
            ),
            until=_instant(data["until"], "recurrence.until") if "until" in data else None,
            until_days_before_event=(
                _int(
                    data["until_days_before_event"],
                    "recurrence.until_days_before_event",
                    minimum=0,
                    maximum=MAX_EVENT_DAYS,
                )
                if "until_days_before_event" in data
                else None
            ),
            condition=condition,
        )

    @property
    def needs_event(self) -> bool:
        """Whether :func:`occurrences` needs the event's date to know when to stop."""
        return self.until_days_before_event is not None


def occurrences(
    schedule: Schedule,
    recurrence: Recurrence | None,
    *,
    zone: ZoneInfo,
    event_date: date | None = None,
    event_start: datetime | None = None,
    max_count: int = 100,
) -> list[datetime]:
    """Return the UTC instants of ``schedule`` repeated by ``recurrence`` for one zone.

    The first is always ``schedule.instant(...)`` (a schedule is never silently dropped by its
    own recurrence bound). Each repeat falls ``every_days`` calendar days later at the same
    *local* wall-clock time in ``zone``, so a DST change between two reminders does not move
    10:00 to 11:00; each is converted with :func:`local_to_utc`'s gap and overlap rules. For a
    local schedule the wall time is the one requested; for an absolute or hours-relative one it
    is the first instant's wall time in ``zone`` (so with a recurrence even those depend on the
    zone). At most ``max_count`` instants are returned. Raises ScheduleError on a missing event.
    """
    if max_count < 1:
        raise ScheduleError("max_count: must be at least 1")
    first = schedule.instant(zone=zone, event_date=event_date, event_start=event_start)
    if recurrence is None:
        return [first]
    wall = schedule.wall_clock(event_date=event_date)
    if wall is None:
        local = first.astimezone(zone)
        wall = (local.date(), local.time().replace(tzinfo=None, fold=0))
    last_day: date | None = None
    if recurrence.until_days_before_event is not None:
        if event_date is None:
            raise ScheduleError("recurrence.until_days_before_event: needs the event's date")
        last_day = event_date - timedelta(days=recurrence.until_days_before_event)
    limit = min(max_count, recurrence.count or max_count)
    result = [first]
    step = timedelta(days=recurrence.every_days)
    day = wall[0]
    while len(result) < limit:
        day += step
        if last_day is not None and day > last_day:
            break
        instant = local_to_utc(day, wall[1], zone)
        if recurrence.until is not None and instant > recurrence.until:
            break
        result.append(instant)
    return result


def zone_dependent(schedule: Schedule, recurrence: Recurrence | None) -> bool:
    """Whether :func:`occurrences` can differ between recipient zones.

    True for local schedules, and for any schedule with a recurrence (repeats keep the local
    wall-clock time). Callers that cache instants per zone use this rather than ``is_local``.
    """
    return schedule.is_local or recurrence is not None


def cancellation_key(campaign_id: uuid.UUID, contact_id: uuid.UUID) -> str:
    """Return the key shared by one contact's pending deliveries of one campaign.

    ``cmp_<campaign hex>:<contact hex>``, 69 characters (deliveries.cancellation_key holds
    200): cancelling by this key stops a recurring reminder for that guest when its ``while``
    condition stops holding.
    """
    return f"cmp_{campaign_id.hex}:{contact_id.hex}"


def _anchor(data: Mapping[str, Any]) -> str:
    """Return which kind of schedule ``data`` asks for: "at", "date", "days" or "hours"."""
    groups = {
        "at": ("at",),
        "date": ("date",),
        "days": ("days_before_event", "days_after_event"),
        "hours": ("hours_before_event", "hours_after_event"),
    }
    given = [key for keys in groups.values() for key in keys if key in data]
    if not given:
        raise ScheduleError(f"schedule: give one of {_ANCHOR_KEYS}")
    # One key in all: {"days_before_event": 1, "days_after_event": 2} is as ambiguous as
    # {"at": ..., "date": ...}.
    if len(given) > 1:
        raise ScheduleError(
            f"schedule.{given[1]}: cannot be combined with {given[0]}; give one of {_ANCHOR_KEYS}"
        )
    return next(group for group, keys in groups.items() if given[0] in keys)


def _set(value: _T | None) -> _T:
    # Schedule.__post_init__ guarantees the fields of each kind; this narrows the type for mypy.
    if value is None:
        raise ScheduleError("schedule: missing a field of its kind")
    return value


def _reject_unknown(data: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise ScheduleError(
            f"{prefix}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def _instant(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as e:
            raise ScheduleError(f"{field}: not an ISO 8601 date-time: {value!r}") from e
    else:
        raise ScheduleError(f"{field}: must be an ISO 8601 date-time string")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ScheduleError(f"{field}: must carry a UTC offset, e.g. 2026-06-01T09:00:00Z")
    return parsed.astimezone(UTC)


def _date(value: Any, field: str) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise ScheduleError(f"{field}: must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise ScheduleError(f"{field}: not a calendar date: {value!r}") from e


def _time(value: Any, field: str) -> time:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise ScheduleError(f"{field}: must be a wall-clock time as HH:MM or HH:MM:SS")
    try:
        return time.fromisoformat(value)
    except ValueError as e:
        raise ScheduleError(f"{field}: not a time of day: {value!r}") from e


def _time_text(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def _int(value: Any, field: str, *, minimum: int, maximum: int) -> int:
    # bool is an int subclass, and {"count": true} is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(f"{field}: must be a whole number")
    if not minimum <= value <= maximum:
        raise ScheduleError(f"{field}: must be between {minimum} and {maximum}")
    return value


def _number(value: Any, field: str, *, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScheduleError(f"{field}: must be a number")
    if not 0 <= value <= maximum:
        raise ScheduleError(f"{field}: must be between 0 and {maximum}")
    return float(value)
