"""Frequency caps: at most ``count`` sends to one contact on one channel in ``hours`` hours.

Set per organization (``settings.frequency_caps``, e.g. ``{"sms": {"count": 3, "hours": 24}}``);
no cap by default. A capped delivery is deferred, not blocked: it goes out when the window
frees up (the oldest counted send leaves it), so nothing is dropped. Emergencies are never
capped. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_CAP_HOURS = 24 * 31  # a month: longer windows are a consent question, not a cap


class FrequencyCapError(ValueError):
    """A frequency-cap setting is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``count`` sends in any ``hours``-hour window."""

    count: int
    hours: float

    @property
    def window(self) -> timedelta:
        """The window as a duration."""
        return timedelta(hours=self.hours)

    def free_at(self, *, sent: int, oldest: datetime | None, now: datetime) -> datetime | None:
        """``None`` if one more send is allowed after ``sent`` sends in the window (the oldest
        at ``oldest``); else when the oldest leaves the window (``now`` plus the window
        when every counted send is this batch's own)."""
        if sent < self.count:
            return None
        return (oldest or now) + self.window


def parse_caps(value: Any, *, field: str = "frequency_caps") -> dict[str, FrequencyCap]:
    """``{"sms": {"count": 3, "hours": 24}}`` as caps by channel (``None``: no caps).
    Raises FrequencyCapError naming the field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FrequencyCapError(f"{field}: expected an object of caps by channel")
    caps: dict[str, FrequencyCap] = {}
    for channel, cap in value.items():
        where = f"{field}.{channel}"
        if cap is None:
            continue
        if not isinstance(cap, Mapping) or set(cap) != {"count", "hours"}:
            raise FrequencyCapError(f"{where}: expected {{'count': N, 'hours': H}}")
        count, hours = cap["count"], cap["hours"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise FrequencyCapError(f"{where}.count: expected a whole number >= 1")
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            raise FrequencyCapError(f"{where}.hours: expected a number of hours")
        if not 0 < hours <= MAX_CAP_HOURS:
            raise FrequencyCapError(f"{where}.hours: expected 0 < hours <= {MAX_CAP_HOURS}")
        caps[str(channel)] = FrequencyCap(count=count, hours=float(hours))
    return caps
