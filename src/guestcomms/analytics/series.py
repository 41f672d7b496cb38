"""Pure time arithmetic: the query's hour-aligned range, and local periods for the series."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from guestcomms.analytics.figures import Counters, total

HOUR = timedelta(hours=1)


class GroupBy(StrEnum):
    """The length of a time series' periods, in the query's time zone."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"  # Monday to Sunday


def floor_hour(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC hour (rollups' granularity)."""
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The end of ``moment``'s UTC hour, or ``moment`` itself on the hour."""
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def hours(since: datetime, until: datetime) -> Iterator[datetime]:
    """The UTC hours from ``since`` up to, not including, ``until`` (both on the hour)."""
    moment = since
    while moment < until:
        yield moment
        moment += HOUR


def period_start(bucket: datetime, *, group_by: GroupBy, zone: ZoneInfo) -> datetime:
    """The local period a UTC hour belongs to, as the UTC instant it starts at (the key:
    aware datetimes in one zone compare equal across a DST fold, instants do not).

    An hour belongs to the local period its start falls in; in a zone whose offset is not a
    whole number of hours (India, Nepal) a day thus starts at the first UTC hour at or after
    local midnight."""
    if group_by is GroupBy.HOUR:
        return bucket
    local = bucket.astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if group_by is GroupBy.WEEK:
        day -= timedelta(days=day.weekday())
    return day.replace(tzinfo=zone).astimezone(UTC)


def group(
    by_hour: Mapping[datetime, Counters],
    *,
    since: datetime,
    until: datetime,
    group_by: GroupBy,
    zone: ZoneInfo,
) -> list[tuple[datetime, Counters]]:
    """Every period touching ``[since, until)`` in order, with the sum of its hours (zero
    for periods without events)."""
    periods: dict[datetime, list[Counters]] = {}
    if group_by is GroupBy.HOUR:
        return [(hour, by_hour.get(hour) or Counters()) for hour in hours(since, until)]
    starts: dict[date, datetime] = {}  # a local date's period, worked out once per date
    for hour in hours(since, until):
        local = hour.astimezone(zone).date()
        start = starts.get(local)
        if start is None:
            start = starts[local] = period_start(hour, group_by=group_by, zone=zone)
        members = periods.setdefault(start, [])
        found = by_hour.get(hour)
        if found is not None:
            members.append(found)
    return [(start, total(members)) for start, members in periods.items()]
