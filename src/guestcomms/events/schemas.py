"""API shapes for events, households and guests. Unknown fields are refused.

Dates read ``YYYY-MM-DD`` and times ``HH:MM`` (24-hour, the event's local wall clock); the
messages name the expected form, because "invalid date" alone does not tell a planner
what to type.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guestcomms.contacts.validation import check_timezone
from guestcomms.domain.enums import GuestRole, Rsvp

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}$")


def parse_date(value: Any) -> Any:
    """``YYYY-MM-DD`` text as a date; raise ``ValueError`` with the expected form otherwise."""
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError(f"use YYYY-MM-DD, e.g. 2026-06-20 (got {value!r})")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a date: {e}") from e


def parse_time(value: Any) -> Any:
    """``HH:MM`` text as a time; raise ``ValueError`` with the expected form otherwise."""
    if value is None or isinstance(value, dt.time):
        return value
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError(f"use HH:MM on a 24-hour clock, e.g. 15:30 (got {value!r})")
    try:
        return dt.time.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a time of day: {e}") from e


class Location(BaseModel):
    """Where an event happens: an address and/or coordinates (WGS 84 degrees)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class _EventFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    date: dt.date | None = Field(default=None, examples=["2026-06-20"])
    start_time: dt.time | None = Field(
        default=None, description="local wall-clock time, HH:MM", examples=["15:30"]
    )
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Lisbon"])
    venue: str | None = Field(default=None, max_length=300)
    outdoor: bool | None = None
    location: Location | None = None
    attributes: dict[str, Any] | None = None

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return None if value is None else parse_date(value)

    @field_validator("start_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        return parse_time(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class EventCreate(_EventFields):
    """A new event: ``name``, ``date`` and ``timezone`` are required."""

    name: str = Field(min_length=1, max_length=200, examples=["Ana & Ben's wedding"])
    date: dt.date = Field(examples=["2026-06-20"])
    timezone: str = Field(max_length=64, examples=["Europe/Lisbon"])


class EventUpdate(_EventFields):
    """A partial update: only the fields given change; ``null`` clears an optional field."""


class EventOut(BaseModel):
    """An event as the API shows it; ``starts_at`` is the start as a UTC instant."""

    id: str
    name: str
    date: str = Field(examples=["2026-06-20"])
    start_time: str | None = Field(examples=["15:30"])
    timezone: str
    starts_at: dt.datetime
    venue: str | None
    outdoor: bool
    location: dict[str, Any] | None
    attributes: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class EventPage(BaseModel):
    """One page of events; pass ``next_cursor`` as ``after`` for the next."""

    items: list[EventOut]
    next_cursor: str | None


class HouseholdCreate(BaseModel):
    """A new household: guests who share one address."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, examples=["The Silvas"])
    address: str | None = Field(default=None, max_length=2000)


class HouseholdUpdate(BaseModel):
    """A partial update of a household."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=2000)


class HouseholdOut(BaseModel):
    """A household as the API shows it."""

    id: str
    event_id: str
    name: str
    address: str | None
    created_at: dt.datetime


class HouseholdPage(BaseModel):
    """One page of an event's households."""

    items: list[HouseholdOut]
    next_cursor: str | None


class _GuestFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: GuestRole | None = None
    household_id: str | None = Field(default=None, examples=["hh_0190..."])
    rsvp: Rsvp | None = None
    side: str | None = Field(default=None, max_length=50, examples=["bride"])
    table: str | None = Field(default=None, max_length=50, examples=["7"])
    dietary: str | None = Field(default=None, max_length=2000, examples=["vegetarian"])
    attributes: dict[str, Any] | None = None


class GuestCreate(_GuestFields):
    """An existing contact joining an event (as a guest unless ``role`` says vendor)."""

    contact_id: str = Field(examples=["ct_0190..."])


class GuestUpdate(_GuestFields):
    """A partial update of a guest; ``null`` clears household, side, table or dietary."""


class RsvpIn(BaseModel):
    """A guest's answer."""

    model_config = ConfigDict(extra="forbid")

    rsvp: Rsvp


class GuestContact(BaseModel):
    """Who the guest is: the contact's basic fields."""

    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None


class GuestOut(BaseModel):
    """A contact's part in an event."""

    contact: GuestContact
    event_id: str
    role: GuestRole
    household_id: str | None
    rsvp: Rsvp
    rsvp_at: dt.datetime | None
    side: str | None
    table: str | None
    dietary: str | None
    attributes: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class GuestPage(BaseModel):
    """One page of an event's guests, ordered by contact id; pass ``next_cursor`` as
    ``after`` for the next."""

    items: list[GuestOut]
    next_cursor: str | None


class GuestImport(BaseModel):
    """The guest columns of one import row (``household`` is a household's name, created in
    the event when it has none of that name). Case is ignored in ``role`` and ``rsvp``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: GuestRole | None = None
    rsvp: Rsvp | None = None
    side: str | None = Field(default=None, max_length=50)
    table: str | None = Field(default=None, max_length=50)
    dietary: str | None = Field(default=None, max_length=2000)
    household: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("role", "rsvp", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value
