"""Quiet hours: the daily window of the recipient's wall clock in which SMS and calls may go out.

A :class:`SendingWindow` is ``start``-``end`` in wall-clock time (default 08:00-21:00, in the
recipient's zone); outside it is quiet. ``end`` before ``start`` is a window that crosses
midnight (22:00-06:00 allows the night and is quiet by day); ``start == end`` allows the
whole day. :meth:`SendingWindow.next_allowed` answers ``None`` (send now) or the next instant
the window opens: the next ``start`` on the recipient's wall clock, turned into UTC by
:func:`~guestcomms.domain.schedule.local_to_utc`, so a ``start`` that falls in a
spring-forward gap opens shortly after it (the documented DST rule), never before.

Deferring is the policy, never dropping: a delivery claimed in quiet hours goes back to the
queue for :meth:`next_allowed` (the worker records a ``deferred`` event with the reason).

Pure: no I/O, nothing of ours outside ``guestcomms.domain``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from guestcomms.domain.schedule import local_to_utc

DEFAULT_START = time(8, 0)
DEFAULT_END = time(21, 0)
_CLOCK_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class QuietHoursError(ValueError):
    """A quiet-hours setting is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class SendingWindow:
    """The wall-clock window ``[start, end)`` in which sends are allowed (outside: quiet)."""

    start: time = DEFAULT_START
    end: time = DEFAULT_END

    @classmethod
    def parse(cls, value: Any, *, field: str = "quiet_hours") -> SendingWindow | None:
        """Read ``{"start": "08:00", "end": "21:00"}`` (either key may be left out: the
        default), ``"08:00-21:00"``; ``None``, ``False``, ``"off"`` or ``{"enabled": false}``
        turn quiet hours off (``None`` returned). Raises QuietHoursError naming ``field``."""
        if value is None or value is False or value in ("", "off"):
            return None
        if isinstance(value, str):
            start, sep, end = value.partition("-")
            if not sep:
                raise QuietHoursError(f"{field}: expected HH:MM-HH:MM, got {value!r}")
            value = {"start": start.strip(), "end": end.strip()}
        if not isinstance(value, Mapping):
            raise QuietHoursError(f"{field}: expected an object with start and end")
        if value.get("enabled", True) is False:
            return None
        unknown = set(value) - {"start", "end", "enabled"}
        if unknown:
            raise QuietHoursError(f"{field}.{sorted(unknown)[0]}: unknown key")
        return cls(
            start=_clock(value.get("start", "08:00"), f"{field}.start"),
            end=_clock(value.get("end", "21:00"), f"{field}.end"),
        )

    def allows(self, wall: time) -> bool:
        """Whether the wall-clock time ``wall`` is inside the window."""
        wall = wall.replace(tzinfo=None, fold=0)
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end  # the window crosses midnight

    def next_allowed(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """``None`` if a send at ``now`` (aware) is allowed in ``zone``; otherwise the UTC
        instant the window next opens (the next ``start`` on the wall clock there)."""
        local = now.astimezone(zone)
        if self.allows(local.time()):
            return None
        # quiet is [end, start) on the wall clock: the next start is today if the wall
        # clock has not reached it yet, else tomorrow (the day after covers a date-line skip)
        today = local.date()
        first = 0 if local.time().replace(tzinfo=None, fold=0) < self.start else 1
        for days in range(first, 3):
            opens = local_to_utc(today + timedelta(days=days), self.start, zone)
            if opens > now:
                return opens
        raise AssertionError("unreachable: a window opens within two days")  # pragma: no cover


def _clock(value: Any, field: str) -> time:
    if not isinstance(value, str) or not (match := _CLOCK_RE.fullmatch(value.strip())):
        raise QuietHoursError(f"{field}: expected HH:MM (00:00-23:59), got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def window_text(window: SendingWindow) -> str:
    """``"08:00-21:00"``: how a window is named in a deferral's reason."""
    return f"{window.start:%H:%M}-{window.end:%H:%M}"
