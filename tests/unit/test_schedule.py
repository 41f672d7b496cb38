"""Scheduling in each guest's own time: zones, DST gaps and overlaps, event-relative, recurrence.

Expected instants are written out by hand from the zones' offsets (NZST +12 / NZDT +13,
PST -8 / PDT -7, GMT 0 / BST +1), not computed by the code under test. The property tests
check :func:`local_to_utc` against a brute-force oracle that knows nothing of PEP 495 folds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from guestcomms.domain.schedule import (
    CANCELLATION_KEY_MAX_CHARS,
    Recurrence,
    Schedule,
    ScheduleError,
    ScheduleKind,
    cancellation_key,
    local_to_utc,
    occurrences,
    resolve_zone,
    zone_dependent,
)

AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
LONDON = ZoneInfo("Europe/London")
TEN = time(10, 0)

ALL_ZONES = sorted(available_timezones())


def utc(text: str) -> datetime:
    """An aware UTC instant from ``YYYY-MM-DDTHH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def wall_of(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock reading of ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def instants_showing(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every UTC instant at which ``zone``'s clock reads ``wall``, earliest first (the oracle).

    Tries every offset the zone uses within a day and a half of ``wall`` and keeps those
    whose instant reads back as ``wall``: none in a gap, two in an overlap.
    """
    guess = wall.replace(tzinfo=UTC)
    offsets = {
        offset
        for minutes in range(-36 * 60, 36 * 60 + 1, 15)
        if (offset := (guess + timedelta(minutes=minutes)).astimezone(zone).utcoffset()) is not None
    }
    candidates = {(wall - offset).replace(tzinfo=UTC) for offset in offsets}
    return sorted(c for c in candidates if wall_of(c, zone) == wall)


def transitions(zone: ZoneInfo, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """``(instant, offset before, offset after)`` of each offset change of ``zone`` in ``year``."""
    found = []
    day = datetime(year, 1, 1, tzinfo=UTC)
    before = day.astimezone(zone).utcoffset()
    while day.year == year:
        nxt = day + timedelta(hours=12)
        after = nxt.astimezone(zone).utcoffset()
        if after != before:
            low, high = day, nxt
            while high - low > timedelta(microseconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            assert before is not None
            assert after is not None
            found.append((high, before, after))
            before = after
        day = nxt
    return found


def assert_policy(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Check local_to_utc(day, at, zone) against the oracle and the documented DST policy."""
    result = local_to_utc(day, at, zone)
    assert result.tzinfo is UTC
    wall = datetime.combine(day, at)
    existing = instants_showing(wall, zone)
    if existing:
        # Exists once: that instant. Exists twice (overlap): the earlier one.
        assert result == existing[0]
    else:
        # Gap: read with the offset before the jump, i.e. moved forward by the gap's length.
        shift = wall_of(result, zone) - wall
        assert shift > timedelta(0)
        offset_after = result.astimezone(zone).utcoffset()
        offset_before = (result - shift).astimezone(zone).utcoffset()
        assert offset_after is not None
        assert offset_before is not None
        assert offset_after - offset_before == shift
    return result


# --- the acceptance example -------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # July: NZST +12, PDT -7, BST +1.
        (
            date(2026, 7, 15),
            {
                "Pacific/Auckland": utc("2026-07-14T22:00"),
                "America/Los_Angeles": utc("2026-07-15T17:00"),
                "Europe/London": utc("2026-07-15T09:00"),
            },
        ),
        # January: NZDT +13, PST -8, GMT +0.
        (
            date(2026, 1, 15),
            {
                "Pacific/Auckland": utc("2026-01-14T21:00"),
                "America/Los_Angeles": utc("2026-01-15T18:00"),
                "Europe/London": utc("2026-01-15T10:00"),
            },
        ),
    ],
)
def test_ten_local_gives_three_different_correct_instants(
    day: date, expected: dict[str, datetime]
) -> None:
    """Guests in three zones scheduled for 10:00 local get three different, correct instants."""
    schedule = Schedule.parse({"date": day.isoformat(), "local_time": "10:00"})
    got = {name: schedule.instant(zone=ZoneInfo(name)) for name in expected}
    assert got == expected
    assert len(set(got.values())) == 3
    assert all(wall_of(instant, ZoneInfo(name)).time() == TEN for name, instant in got.items())


# --- DST gaps and overlaps, by hand -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected", "shown"),
    [
        # Spring forward 02:00 PST -> 03:00 PDT: 02:30 is read as PST (-8), shows 03:30 PDT.
        (LOS_ANGELES, date(2026, 3, 8), time(2, 30), utc("2026-03-08T10:30"), time(3, 30)),
        # 01:00 GMT -> 02:00 BST: 01:30 is read as GMT, shows 02:30 BST.
        (LONDON, date(2026, 3, 29), time(1, 30), utc("2026-03-29T01:30"), time(2, 30)),
        # Last Sunday of September, 02:00 NZST -> 03:00 NZDT: 02:30 +12, shows 03:30 NZDT.
        (AUCKLAND, date(2026, 9, 27), time(2, 30), utc("2026-09-26T14:30"), time(3, 30)),
        # Lord Howe moves by half an hour, 02:00 -> 02:30: 02:15 (+10:30) shows 02:45 (+11).
        (
            ZoneInfo("Australia/Lord_Howe"),
            date(2026, 10, 4),
            time(2, 15),
            utc("2026-10-03T15:45"),
            time(2, 45),
        ),
    ],
)
def test_a_time_in_a_spring_forward_gap_moves_forward_by_the_gap(
    zone: ZoneInfo, day: date, at: time, expected: datetime, shown: time
) -> None:
    """A wall time that never happens is sent the length of the gap later, on the same day."""
    assert instants_showing(datetime.combine(day, at), zone) == []  # it really is a gap
    result = local_to_utc(day, at, zone)
    assert result == expected
    assert wall_of(result, zone) == datetime.combine(day, shown)


@pytest.mark.parametrize(
    ("zone", "day", "expected", "later"),
    [
        # 02:00 PDT -> 01:00 PST: 01:30 happens at 08:30Z (PDT) and again at 09:30Z (PST).
        (LOS_ANGELES, date(2026, 11, 1), utc("2026-11-01T08:30"), utc("2026-11-01T09:30")),
        # 02:00 BST -> 01:00 GMT: 01:30 at 00:30Z (BST) and at 01:30Z (GMT).
        (LONDON, date(2026, 10, 25), utc("2026-10-25T00:30"), utc("2026-10-25T01:30")),
    ],
)
def test_a_time_in_a_fall_back_overlap_is_the_earlier_instant(
    zone: ZoneInfo, day: date, expected: datetime, later: datetime
) -> None:
    """A wall time that happens twice is sent the first time it happens."""
    assert instants_showing(datetime.combine(day, time(1, 30)), zone) == [expected, later]
    assert local_to_utc(day, time(1, 30), zone) == expected


def test_auckland_overlap_is_the_earlier_instant() -> None:
    """First Sunday of April 03:00 NZDT -> 02:00 NZST: 02:30 is taken as NZDT (+13)."""
    result = local_to_utc(date(2026, 4, 5), time(2, 30), AUCKLAND)
    assert result == utc("2026-04-04T13:30")
    assert result.astimezone(AUCKLAND).utcoffset() == timedelta(hours=13)


def test_a_fold_on_the_requested_time_is_ignored() -> None:
    """The policy picks the earlier instant even if the caller passes fold=1."""
    day = date(2026, 11, 1)
    assert local_to_utc(day, time(1, 30, fold=1), LOS_ANGELES) == utc("2026-11-01T08:30")


def test_a_time_with_an_offset_is_refused() -> None:
    """local_to_utc takes wall-clock times only."""
    with pytest.raises(ScheduleError, match=r"^schedule\.local_time:"):
        local_to_utc(date(2026, 1, 1), time(10, tzinfo=UTC), LONDON)


# Searched for with transitions() over every zone, 1970-2030, in the tzdata of the machine
# that wrote this: no zone has a fall-back overlap containing 10:00, and the only gaps that
# contain 10:00 are days skipped when an island crossed the date line (Pacific/Apia and
# Pacific/Fakaofo on 2011-12-30, Pacific/Kwajalein on 1993-08-21, Pacific/Kanton and
# Pacific/Kiritimati on 1994-12-31). Europe/Athens sprang forward 09:00 -> 10:00 on
# 1979-04-01, so a guest's 10:00 was the very instant the clocks landed on. The test re-finds
# each of these transitions in the zone data rather than trusting this comment.
@pytest.mark.parametrize(
    ("name", "day", "expected", "shown"),
    [
        # -10 -> +14: 10:00 on the skipped 30th is read at -10, i.e. 10:00 on the 31st.
        ("Pacific/Apia", date(2011, 12, 30), utc("2011-12-30T20:00"), "2011-12-31T10:00"),
        # -12 -> +12: the 21st was skipped.
        ("Pacific/Kwajalein", date(1993, 8, 21), utc("1993-08-21T22:00"), "1993-08-22T10:00"),
        # -10 -> +14: the 31st was skipped.
        ("Pacific/Kiritimati", date(1994, 12, 31), utc("1994-12-31T20:00"), "1995-01-01T10:00"),
        # EET +2 -> EEST +3 at 09:00: 10:00 exists, the first instant of summer time.
        ("Europe/Athens", date(1979, 4, 1), utc("1979-04-01T07:00"), "1979-04-01T10:00"),
    ],
)
def test_a_guest_whose_ten_oclock_falls_in_a_transition(
    name: str, day: date, expected: datetime, shown: str
) -> None:
    """10:00 inside (or at the edge of) a real transition follows the documented policy."""
    zone = ZoneInfo(name)
    ten = datetime.combine(day, TEN)
    windows = [
        (instant + before, instant + after)
        for instant, before, after in transitions(zone, day.year)
    ]
    # The zone data has a jump forward whose skipped wall times reach 10:00 that day.
    assert any(
        start.replace(tzinfo=None) <= ten <= end.replace(tzinfo=None) for start, end in windows
    )
    result = assert_policy(day, TEN, zone)
    assert result == expected
    assert wall_of(result, zone) == datetime.fromisoformat(shown)


def test_athens_half_past_nine_was_in_the_gap() -> None:
    """Just before Athens's 1979 jump landed on 10:00, 09:30 is moved to 10:30 EEST."""
    result = local_to_utc(date(1979, 4, 1), time(9, 30), ZoneInfo("Europe/Athens"))
    assert result == utc("1979-04-01T07:30")
    assert wall_of(result, ZoneInfo("Europe/Athens")) == datetime(1979, 4, 1, 10, 30)


# --- properties ---------------------------------------------------------------------------

PROPERTY = settings(
    derandomize=True,
    deadline=None,
    max_examples=300,
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


@PROPERTY
@given(
    name=st.sampled_from(ALL_ZONES),
    day=st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31)),
    at=st.times(),
)
def test_local_to_utc_matches_the_oracle_in_every_zone(name: str, day: date, at: time) -> None:
    """Any zone, date and time: UTC-aware; the wall time when it exists; the policy otherwise."""
    assume(day < date(2100, 12, 31))  # the oracle looks a day and a half past the date
    assert_policy(day, at, ZoneInfo(name))


# Zones that observe DST today, found by comparing January's offset with July's.
DST_ZONES = [
    name
    for name in ALL_ZONES
    if datetime(2025, 1, 15, tzinfo=ZoneInfo(name)).utcoffset()
    != datetime(2025, 7, 15, tzinfo=ZoneInfo(name)).utcoffset()
]


@PROPERTY
@given(
    name=st.sampled_from(DST_ZONES),
    year=st.integers(min_value=1990, max_value=2037),
    which=st.integers(min_value=0, max_value=3),
    minutes=st.integers(min_value=-90, max_value=150),
)
def test_wall_times_around_real_transitions_follow_the_policy(
    name: str, year: int, which: int, minutes: int
) -> None:
    """Wall times around real DST transitions: gaps shift forward, overlaps take the first."""
    zone = ZoneInfo(name)
    found = transitions(zone, year)
    assume(found)
    instant, before, after = found[which % len(found)]
    # The skipped or repeated wall times start at the transition instant read with the
    # smaller of the two offsets; the range covers them and the times either side.
    wall = (instant + min(before, after)).replace(tzinfo=None) + timedelta(minutes=minutes)
    assert_policy(wall.date(), wall.time(), zone)


def test_the_property_zones_include_gaps_and_overlaps() -> None:
    """DST_ZONES really have transitions, so the property above exercises gaps and overlaps."""
    assert "Europe/London" in DST_ZONES
    assert "Pacific/Auckland" in DST_ZONES
    assert "Asia/Tokyo" not in DST_ZONES
    london = transitions(LONDON, 2026)
    assert [(t, b, a) for t, b, a in london] == [
        (utc("2026-03-29T01:00"), timedelta(0), timedelta(hours=1)),
        (utc("2026-10-25T01:00"), timedelta(hours=1), timedelta(0)),
    ]


# --- event-relative -------------------------------------------------------------------------

EVENT_DAY = date(2026, 4, 11)  # a Saturday; London moves to BST on 2026-03-29


def test_days_before_event_at_local_time() -> None:
    """14 days before at 10:00 is in GMT; 7 days before is in BST, an hour earlier in UTC."""
    fortnight = Schedule.parse({"days_before_event": 14, "local_time": "10:00"})
    week = Schedule.parse({"days_before_event": 7, "local_time": "10:00"})
    assert fortnight.instant(zone=LONDON, event_date=EVENT_DAY) == utc("2026-03-28T10:00")
    assert week.instant(zone=LONDON, event_date=EVENT_DAY) == utc("2026-04-04T09:00")
    # Auckland is still on NZDT (+13) on 04-04; it falls back on Sunday 04-05.
    assert week.instant(zone=AUCKLAND, event_date=EVENT_DAY) == utc("2026-04-03T21:00")


def test_days_after_event() -> None:
    """days_after_event counts forward from the event's date."""
    schedule = Schedule.parse({"days_after_event": 2, "local_time": "09:30"})
    assert schedule.instant(zone=LOS_ANGELES, event_date=EVENT_DAY) == utc("2026-04-13T16:30")


def test_hours_before_and_after_the_event_start() -> None:
    """Hour offsets are measured from the event's start instant, whatever the guest's zone."""
    start = datetime(2026, 6, 20, 15, 0, tzinfo=LONDON)  # 14:00Z
    before = Schedule.parse({"hours_before_event": 2})
    after = Schedule.parse({"hours_after_event": 1.5})
    assert before.instant(zone=AUCKLAND, event_start=start) == utc("2026-06-20T12:00")
    assert before.instant(zone=LOS_ANGELES, event_start=start) == utc("2026-06-20T12:00")
    assert after.instant(zone=UTC_ZONE, event_start=start) == utc("2026-06-20T15:30")


UTC_ZONE = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"days_before_event": 3, "local_time": "10:00"}, "schedule.days_before_event"),
        ({"days_after_event": 3, "local_time": "10:00"}, "schedule.days_after_event"),
        ({"hours_before_event": 3}, "schedule.hours_before_event"),
    ],
)
def test_event_relative_without_the_event_is_refused(data: dict[str, Any], field: str) -> None:
    """An event-relative schedule without the event's date or start names its field."""
    schedule = Schedule.parse(data)
    assert schedule.needs_event
    with pytest.raises(ScheduleError, match=rf"^{field}: needs the event"):
        schedule.instant(zone=LONDON)


def test_a_naive_event_start_is_refused() -> None:
    """The event's start must be an instant, not a wall time of unknown zone."""
    with pytest.raises(ScheduleError, match=r"^schedule\.hours_before_event:"):
        Schedule.parse({"hours_before_event": 1}).instant(
            zone=LONDON, event_start=datetime(2026, 6, 20, 15)
        )


@pytest.mark.parametrize(
    ("data", "kind", "needs_event", "is_local"),
    [
        ({"at": "2026-06-01T09:00:00Z"}, ScheduleKind.ABSOLUTE, False, False),
        ({"date": "2026-06-01", "local_time": "10:00"}, ScheduleKind.LOCAL, False, True),
        ({"days_before_event": 1, "local_time": "10:00"}, ScheduleKind.EVENT_LOCAL, True, True),
        ({"hours_after_event": 2}, ScheduleKind.EVENT_OFFSET, True, False),
    ],
)
def test_kinds_and_their_needs(
    data: dict[str, Any], kind: ScheduleKind, needs_event: bool, is_local: bool
) -> None:
    """Each shape parses to its kind, says whether it needs the event and the guest's zone."""
    schedule = Schedule.parse(data)
    assert schedule.kind is kind
    assert schedule.needs_event is needs_event
    assert schedule.is_local is is_local
    assert Schedule.parse(schedule.to_json()) == schedule


def test_an_absolute_instant_is_the_same_for_everyone() -> None:
    """ "at" keeps its instant, normalised to UTC, whatever the zone."""
    schedule = Schedule.parse({"at": "2026-06-01T11:00:00+02:00"})
    assert schedule.to_json() == {"at": "2026-06-01T09:00:00Z"}
    assert {schedule.instant(zone=z) for z in (AUCKLAND, LONDON, LOS_ANGELES)} == {
        utc("2026-06-01T09:00")
    }


# --- parsing errors name the field ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"at": "2026-06-01T09:00:00"}, "schedule.at"),  # no offset
        ({"at": "tomorrow"}, "schedule.at"),
        ({"at": 1780000000}, "schedule.at"),
        ({"date": "2026-02-30", "local_time": "10:00"}, "schedule.date"),
        ({"date": "20260601", "local_time": "10:00"}, "schedule.date"),
        ({"date": "2026-06-01", "local_time": "25:00"}, "schedule.local_time"),
        ({"date": "2026-06-01", "local_time": "10:60"}, "schedule.local_time"),
        ({"date": "2026-06-01", "local_time": "10:00+01:00"}, "schedule.local_time"),
        ({"date": "2026-06-01", "local_time": "10"}, "schedule.local_time"),
        ({"date": "2026-06-01"}, "schedule.local_time"),
        ({"at": "2026-06-01T09:00:00Z", "local_time": "10:00"}, "schedule.local_time"),
        ({"hours_before_event": 2, "local_time": "10:00"}, "schedule.local_time"),
        ({"at": "2026-06-01T09:00:00Z", "date": "2026-06-01"}, "schedule.date"),
        (
            {"days_before_event": 1, "days_after_event": 2, "local_time": "10:00"},
            "schedule.days_after_event",
        ),
        ({"days_before_event": -1, "local_time": "10:00"}, "schedule.days_before_event"),
        ({"days_before_event": 1.5, "local_time": "10:00"}, "schedule.days_before_event"),
        ({"days_before_event": True, "local_time": "10:00"}, "schedule.days_before_event"),
        ({"hours_before_event": "2"}, "schedule.hours_before_event"),
        ({"hours_before_event": float("nan")}, "schedule.hours_before_event"),
        ({"hours_after_event": -1}, "schedule.hours_after_event"),
        ({"at": "2026-06-01T09:00:00Z", "timezone": "UTC"}, "schedule.timezone"),
        ({}, "schedule"),
    ],
)
def test_schedule_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    """Bad input is a ScheduleError whose message starts with the offending field."""
    with pytest.raises(ScheduleError, match=rf"^{field}:"):
        Schedule.parse(data)


def test_a_schedule_must_be_an_object() -> None:
    """A list or string where an object belongs is refused."""
    with pytest.raises(ScheduleError, match=r"^schedule: must be an object"):
        Schedule.parse(["at"])  # type: ignore[arg-type]


def test_a_hand_built_schedule_must_be_complete() -> None:
    """Building a Schedule directly still checks the fields its kind reads."""
    with pytest.raises(ScheduleError, match=r"^schedule:"):
        Schedule(kind=ScheduleKind.LOCAL, on=date(2026, 1, 1))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"count": 3}, "recurrence.every_days"),
        ({"every_days": 0, "count": 3}, "recurrence.every_days"),
        ({"every_days": "3", "count": 3}, "recurrence.every_days"),
        ({"every_days": 3}, "recurrence"),
        ({"every_days": 3, "count": 3, "until": "2026-06-01T00:00:00Z"}, "recurrence"),
        ({"every_days": 3, "count": 0}, "recurrence.count"),
        ({"every_days": 3, "count": True}, "recurrence.count"),
        ({"every_days": 3, "until": "2026-06-01T00:00:00"}, "recurrence.until"),
        ({"every_days": 3, "until_days_before_event": -2}, "recurrence.until_days_before_event"),
        ({"every_days": 3, "count": 2, "while": "  "}, "recurrence.while"),
        ({"every_days": 3, "count": 2, "while": 7}, "recurrence.while"),
        ({"every_days": 3, "count": 2, "unless": "x"}, "recurrence.unless"),
    ],
)
def test_recurrence_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    """Bad recurrence input is a ScheduleError whose message starts with the offending field."""
    with pytest.raises(ScheduleError, match=rf"^{field}:"):
        Recurrence.parse(data)


def test_recurrence_keeps_its_condition_as_text() -> None:
    """The "while" condition is kept verbatim, for the audience filter to evaluate."""
    recurrence = Recurrence.parse({"every_days": 3, "count": 4, "while": 'rsvp = "pending"'})
    assert recurrence == Recurrence(every_days=3, count=4, condition='rsvp = "pending"')
    assert not recurrence.needs_event
    assert Recurrence.parse({"every_days": 2, "until_days_before_event": 1}).needs_event


# --- recurrence -------------------------------------------------------------------------------


def test_repeats_keep_the_local_time_across_a_dst_change() -> None:
    """Weekly at 10:00 in Los Angeles: 18:00Z in PST, then 17:00Z once PDT starts on 03-08."""
    schedule = Schedule.parse({"date": "2026-03-01", "local_time": "10:00"})
    got = occurrences(schedule, Recurrence.parse({"every_days": 7, "count": 3}), zone=LOS_ANGELES)
    assert got == [utc("2026-03-01T18:00"), utc("2026-03-08T17:00"), utc("2026-03-15T17:00")]
    assert {wall_of(instant, LOS_ANGELES).time() for instant in got} == {TEN}


def test_until_is_inclusive() -> None:
    """An occurrence exactly at "until" is kept; one a second later is not."""
    schedule = Schedule.parse({"date": "2026-03-01", "local_time": "10:00"})
    at_bound = Recurrence.parse({"every_days": 7, "until": "2026-03-15T17:00:00Z"})
    before_bound = Recurrence.parse({"every_days": 7, "until": "2026-03-15T16:59:59Z"})
    assert len(occurrences(schedule, at_bound, zone=LOS_ANGELES)) == 3
    assert occurrences(schedule, before_bound, zone=LOS_ANGELES) == [
        utc("2026-03-01T18:00"),
        utc("2026-03-08T17:00"),
    ]


def test_until_days_before_event() -> None:
    """Every 2 days from 14 days before, the last no later than the day before the event."""
    schedule = Schedule.parse({"days_before_event": 14, "local_time": "10:00"})
    recurrence = Recurrence.parse({"every_days": 2, "until_days_before_event": 1})
    got = occurrences(schedule, recurrence, zone=LONDON, event_date=EVENT_DAY)
    # 03-28 is GMT; from 03-30 on London is on BST, so 10:00 is 09:00Z.
    assert got == [
        utc("2026-03-28T10:00"),
        utc("2026-03-30T09:00"),
        utc("2026-04-01T09:00"),
        utc("2026-04-03T09:00"),
        utc("2026-04-05T09:00"),
        utc("2026-04-07T09:00"),
        utc("2026-04-09T09:00"),
    ]
    with pytest.raises(ScheduleError, match=r"^recurrence\.until_days_before_event:"):
        occurrences(
            Schedule.parse({"date": "2026-03-01", "local_time": "10:00"}), recurrence, zone=LONDON
        )


def test_a_repeat_asks_for_the_requested_time_not_the_gap_shifted_one() -> None:
    """A series at 02:30 starting on the spring-forward day is at 02:30 again a week later."""
    schedule = Schedule.parse({"date": "2026-03-08", "local_time": "02:30"})
    got = occurrences(schedule, Recurrence(every_days=7, count=2), zone=LOS_ANGELES)
    assert got == [utc("2026-03-08T10:30"), utc("2026-03-15T09:30")]
    assert wall_of(got[1], LOS_ANGELES) == datetime(2026, 3, 15, 2, 30)


def test_an_absolute_series_keeps_the_first_wall_time_in_the_guest_zone() -> None:
    """Repeats of an "at" schedule keep its local time, so they depend on the zone."""
    schedule = Schedule.parse({"at": "2026-03-01T18:00:00Z"})
    recurrence = Recurrence(every_days=7, count=2)
    assert occurrences(schedule, recurrence, zone=LOS_ANGELES)[1] == utc("2026-03-08T17:00")
    assert occurrences(schedule, recurrence, zone=UTC_ZONE)[1] == utc("2026-03-08T18:00")
    assert zone_dependent(schedule, recurrence)
    assert not zone_dependent(schedule, None)


def test_without_recurrence_there_is_one_occurrence() -> None:
    """No recurrence: just the schedule's instant."""
    schedule = Schedule.parse({"hours_before_event": 2})
    start = utc("2026-06-20T14:00")
    assert occurrences(schedule, None, zone=LONDON, event_start=start) == [utc("2026-06-20T12:00")]


def test_max_count_caps_the_series() -> None:
    """A long series stops at max_count (100 by default)."""
    schedule = Schedule.parse({"date": "2026-01-01", "local_time": "10:00"})
    recurrence = Recurrence(every_days=1, count=1000)
    assert len(occurrences(schedule, recurrence, zone=LONDON)) == 100
    assert len(occurrences(schedule, recurrence, zone=LONDON, max_count=5)) == 5
    with pytest.raises(ScheduleError, match=r"^max_count:"):
        occurrences(schedule, recurrence, zone=LONDON, max_count=0)


# --- zones and keys ------------------------------------------------------------------------


def test_resolve_zone_takes_the_first_valid_candidate() -> None:
    """Contact, then event, then organization; invalid and missing names are skipped."""
    assert resolve_zone("Pacific/Auckland", "Europe/London") == AUCKLAND
    assert resolve_zone(None, "Europe/London", "Pacific/Auckland") == LONDON
    assert (
        resolve_zone(
            "",
            " ",
            "Not/AZone",
            "America",
            "../etc/passwd",
            "localtime",
            None,
            "America/Los_Angeles",
        )
        == LOS_ANGELES
    )
    assert resolve_zone(" Europe/London ") == LONDON


def test_resolve_zone_falls_back_to_utc() -> None:
    """With no valid candidate, UTC."""
    assert resolve_zone() == UTC_ZONE
    assert resolve_zone(None, "Mars/Olympus_Mons") == UTC_ZONE


def test_cancellation_key() -> None:
    """One key per campaign and contact, fitting deliveries.cancellation_key."""
    campaign, contact = uuid.uuid4(), uuid.uuid4()
    key = cancellation_key(campaign, contact)
    assert key == f"cmp_{campaign.hex}:{contact.hex}"
    assert len(key) <= CANCELLATION_KEY_MAX_CHARS
    assert cancellation_key(campaign, uuid.uuid4()) != key
