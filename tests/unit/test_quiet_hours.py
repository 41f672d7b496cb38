"""Quiet hours (the sending window in the recipient's zone) and frequency caps: pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestcomms.domain.frequency import FrequencyCap, FrequencyCapError, parse_caps
from guestcomms.domain.quiet_hours import QuietHoursError, SendingWindow

NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
DAY = SendingWindow()  # 08:00-21:00
NIGHT = SendingWindow(start=time(22, 0), end=time(6, 0))  # crosses midnight
ZONES = sorted(available_timezones() - {"localtime", "posixrules", "Factory"})
PROPERTY = settings(
    derandomize=True,
    deadline=None,
    max_examples=300,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_inside_the_window_is_allowed_now() -> None:
    """12:00 in New York is inside 08:00-21:00: no deferral."""
    assert DAY.next_allowed(utc(2026, 6, 1, 16, 0), NEW_YORK) is None


def test_23_00_local_waits_for_08_00_the_next_morning() -> None:
    """23:00 EDT on 1 June waits for 08:00 EDT on 2 June (12:00 UTC)."""
    assert DAY.next_allowed(utc(2026, 6, 2, 3, 0), NEW_YORK) == utc(2026, 6, 2, 12, 0)


def test_early_morning_waits_for_08_00_the_same_day() -> None:
    """05:30 EST waits for 08:00 EST the same day (13:00 UTC)."""
    assert DAY.next_allowed(utc(2026, 1, 15, 10, 30), NEW_YORK) == utc(2026, 1, 15, 13, 0)


def test_the_end_is_exclusive_and_the_start_inclusive() -> None:
    """21:00 sharp is quiet; 08:00 sharp is allowed."""
    assert DAY.next_allowed(utc(2026, 1, 16, 2, 0), NEW_YORK) == utc(2026, 1, 16, 13, 0)
    assert DAY.next_allowed(utc(2026, 1, 15, 13, 0), NEW_YORK) is None


def test_a_window_crossing_midnight() -> None:
    """22:00-06:00 allows 23:00 and 03:00; at 12:00 it waits for 22:00 the same day."""
    assert NIGHT.next_allowed(utc(2026, 1, 15, 23, 0), UTC_ZONE) is None
    assert NIGHT.next_allowed(utc(2026, 1, 15, 3, 0), UTC_ZONE) is None
    assert NIGHT.next_allowed(utc(2026, 1, 15, 12, 0), UTC_ZONE) == utc(2026, 1, 15, 22, 0)
    assert NIGHT.next_allowed(utc(2026, 1, 15, 6, 0), UTC_ZONE) == utc(2026, 1, 15, 22, 0)


UTC_ZONE = ZoneInfo("UTC")


def test_the_night_before_spring_forward() -> None:
    """23:00 PST on 7 March 2026 (DST starts at 02:00 on the 8th) waits for 08:00 PDT on the
    8th: 15:00 UTC, not 16:00 (the offset of the morning, not of the night before)."""
    assert DAY.next_allowed(utc(2026, 3, 8, 7, 0), LOS_ANGELES) == utc(2026, 3, 8, 15, 0)


def test_the_night_before_fall_back() -> None:
    """23:00 PDT on 31 October 2026 waits for 08:00 PST on 1 November: 16:00 UTC."""
    assert DAY.next_allowed(utc(2026, 11, 1, 6, 0), LOS_ANGELES) == utc(2026, 11, 1, 16, 0)


def test_a_start_in_the_spring_forward_gap_opens_after_the_gap() -> None:
    """A window opening at 02:30 on the night clocks jump 02:00 -> 03:00 opens at 03:30 PDT
    (the documented gap rule of local_to_utc), never before the requested wall time."""
    window = SendingWindow(start=time(2, 30), end=time(21, 0))
    opens = window.next_allowed(utc(2026, 3, 8, 9, 0), LOS_ANGELES)  # 01:00 PST
    assert opens == utc(2026, 3, 8, 10, 30)
    assert opens.astimezone(LOS_ANGELES).time() == time(3, 30)


def test_a_start_in_the_fall_back_overlap_takes_the_first_instant() -> None:
    """A window opening at 01:30 on the night clocks fall back opens at the first 01:30."""
    window = SendingWindow(start=time(1, 30), end=time(21, 0))
    opens = window.next_allowed(utc(2026, 11, 1, 7, 0), LOS_ANGELES)  # 00:00 PDT
    assert opens == utc(2026, 11, 1, 8, 30)  # 01:30 PDT


def test_a_whole_day_skipped_at_the_date_line() -> None:
    """Pacific/Apia skipped 30 December 2011: 23:00 on the 29th waits for 08:00 on the 31st."""
    apia = ZoneInfo("Pacific/Apia")
    now = datetime(2011, 12, 29, 23, 0, tzinfo=apia)
    opens = DAY.next_allowed(now, apia)
    assert opens is not None
    assert opens.astimezone(apia).replace(tzinfo=None) == datetime(2011, 12, 31, 8, 0)


def test_equal_start_and_end_allow_the_whole_day() -> None:
    """start == end: no quiet hours at all."""
    always = SendingWindow(start=time(9, 0), end=time(9, 0))
    assert always.next_allowed(utc(2026, 1, 15, 3, 0), NEW_YORK) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"start": "08:00", "end": "21:00"}, SendingWindow()),
        ({"start": "07:30"}, SendingWindow(start=time(7, 30))),
        ("22:00-06:00", NIGHT),
        ({}, SendingWindow()),
        (None, None),
        ("off", None),
        (False, None),
        ({"enabled": False}, None),
    ],
)
def test_settings_are_parsed(value: object, expected: SendingWindow | None) -> None:
    """The documented setting shapes, and the ways to turn quiet hours off."""
    assert SendingWindow.parse(value) == expected


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"start": "8:00"}, "quiet_hours.start"),
        ({"end": "24:00"}, "quiet_hours.end"),
        ({"start": 8}, "quiet_hours.start"),
        ({"begin": "08:00"}, "quiet_hours.begin"),
        ("08:00", "quiet_hours"),
        (["08:00", "21:00"], "quiet_hours"),
    ],
)
def test_bad_settings_name_the_field(value: object, field: str) -> None:
    """A malformed setting is refused with the field that is wrong."""
    with pytest.raises(QuietHoursError, match=rf"^{field}\b"):
        SendingWindow.parse(value)


clock_times = st.times().map(lambda t: t.replace(second=0, microsecond=0))


@PROPERTY
@given(
    name=st.sampled_from(ZONES),
    now=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
    ),
    start=clock_times,
    end=clock_times,
)
def test_the_next_allowed_time_is_the_next_opening(
    name: str, now: datetime, start: time, end: time
) -> None:
    """Any zone, instant and window: None exactly when the wall clock is inside the window;
    otherwise a later instant, inside the window, within two days, and no opening of the
    window lies between (every quarter hour before it is still quiet)."""
    zone = ZoneInfo(name)
    window = SendingWindow(start=start, end=end)
    opens = window.next_allowed(now, zone)
    if window.allows(now.astimezone(zone).time()):
        assert opens is None
        return
    assert opens is not None
    assert opens.utcoffset() == timedelta(0)
    assert now < opens <= now + timedelta(days=2)
    assert window.allows(opens.astimezone(zone).time())
    probe = now + timedelta(minutes=15)
    while probe < opens - timedelta(hours=1):  # an hour of slack for DST shifts of the start
        assert not window.allows(probe.astimezone(zone).time()), probe
        probe += timedelta(minutes=15)


def test_frequency_cap_frees_when_the_oldest_send_leaves_the_window() -> None:
    """3 in 24h: a fourth waits until the oldest of the three is 24 hours old."""
    cap = FrequencyCap(count=3, hours=24)
    now = utc(2026, 6, 1, 12)
    oldest = utc(2026, 6, 1, 2)
    assert cap.free_at(sent=2, oldest=oldest, now=now) is None
    assert cap.free_at(sent=3, oldest=oldest, now=now) == utc(2026, 6, 2, 2)
    assert cap.free_at(sent=3, oldest=None, now=now) == utc(2026, 6, 2, 12)


def test_frequency_caps_are_parsed_and_checked() -> None:
    """Caps by channel; none by default; a malformed cap names its field."""
    assert parse_caps(None) == {}
    assert parse_caps({"sms": {"count": 3, "hours": 24}, "email": None}) == {
        "sms": FrequencyCap(count=3, hours=24.0)
    }
    with pytest.raises(FrequencyCapError, match=r"^frequency_caps\.sms\.count"):
        parse_caps({"sms": {"count": 0, "hours": 24}})
    with pytest.raises(FrequencyCapError, match=r"^frequency_caps\.sms\.hours"):
        parse_caps({"sms": {"count": 1, "hours": 0}})
    with pytest.raises(FrequencyCapError, match=r"^frequency_caps\.sms:"):
        parse_caps({"sms": {"count": 1}})
