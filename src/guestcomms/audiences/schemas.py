"""API shapes for saved audiences and previews. Unknown fields are refused.

The filter is kept exactly as sent (no whitespace trimmed), so the position of a syntax error
points into the caller's own text.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guestcomms.contacts.schemas import ContactOut

MAX_SAMPLE = 100  # contacts a preview may show


def _name(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    if not stripped:
        raise ValueError("the name cannot be blank")
    return stripped


FILTER_DESCRIPTION = (
    'the audience filter language, e.g. `rsvp = "yes" and tags has "family"`; empty: everyone'
)


class AudienceCreate(BaseModel):
    """A saved audience: a name, an optional event and a filter."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Family who said yes"])
    event_id: str | None = Field(
        default=None, description="evt_ id: select among this event's guests and vendors"
    )
    filter: str = Field(default="", description=FILTER_DESCRIPTION)
    dedupe_households: bool = Field(
        default=False,
        description="one member per household (the lowest contact id); needs an event",
    )

    _strip_name = field_validator("name")(_name)


class AudienceUpdate(BaseModel):
    """A partial update: only the fields given change; ``event_id: null`` removes the event."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    event_id: str | None = None
    filter: str | None = Field(default=None, description=FILTER_DESCRIPTION)
    dedupe_households: bool | None = None

    _strip_name = field_validator("name")(_name)


class AudienceOut(BaseModel):
    """A saved audience as the API shows it."""

    id: str
    name: str
    event_id: str | None
    filter: str
    dedupe_households: bool
    created_at: datetime
    updated_at: datetime


class AudiencePage(BaseModel):
    """One page of audiences; pass ``next_cursor`` as ``after`` for the next."""

    items: list[AudienceOut]
    next_cursor: str | None


class PreviewRequest(BaseModel):
    """An unsaved audience to preview."""

    model_config = ConfigDict(extra="forbid")

    filter: str = Field(default="", description=FILTER_DESCRIPTION)
    event_id: str | None = None
    dedupe_households: bool = False
    sample: int = Field(default=10, ge=0, le=MAX_SAMPLE, description="contacts to show")


class AudiencePreview(BaseModel):
    """How many members an audience has now, and the first few (in contact-id order)."""

    count: int
    sample: list[ContactOut]
