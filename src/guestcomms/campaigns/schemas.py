"""API shapes for campaigns, their preview and progress, and cancelling by key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guestcomms.domain.enums import Channel
from guestcomms.messages.schemas import PriorityName

_SCHEDULE_HELP = (
    'when to send: {"at": "2026-06-01T09:00:00Z"}, {"date": "2026-06-01", "local_time": '
    '"10:00"} (each guest\'s own zone), {"days_before_event": 14, "local_time": "10:00"}, '
    '{"hours_before_event": 2}; empty or absent: when the campaign starts'
)
_RECURRENCE_HELP = (
    'repeat: {"every_days": 3, "count": 4} (or "until", "until_days_before_event"), with an '
    'optional "while" filter: a guest for whom it stops holding gets none of the rest'
)


class CampaignCreate(BaseModel):
    """A campaign: a template sent to an audience on a schedule."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    template_id: str = Field(examples=["tpl_0193..."])
    event_id: str | None = Field(default=None, examples=["evt_0193..."])
    audience_id: str | None = Field(default=None, description="a saved audience")
    filter: str = Field(
        default="",
        max_length=4000,
        description="audience filter, and-ed with the saved audience's",
        examples=['rsvp = "pending" and tags has "family"'],
    )
    dedupe_households: bool = False
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=6)
    priority: PriorityName = "normal"
    variables: dict[str, Any] = Field(default_factory=dict)
    schedule: dict[str, Any] = Field(default_factory=dict, description=_SCHEDULE_HELP)
    recurrence: dict[str, Any] | None = Field(default=None, description=_RECURRENCE_HELP)


class CampaignUpdate(BaseModel):
    """A change to a campaign: only the fields given change (allowed until a delivery of it
    has been claimed; its unclaimed deliveries are then written again)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    template_id: str | None = None
    event_id: str | None = None
    audience_id: str | None = None
    filter: str | None = Field(default=None, max_length=4000)
    dedupe_households: bool | None = None
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=6)
    priority: PriorityName | None = None
    variables: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    recurrence: dict[str, Any] | None = None

    @field_validator("name", "priority", "dedupe_households")
    @classmethod
    def _omitted_not_null(cls, value: object) -> object:
        # the campaign always has these: leave the field out to keep it, never null it
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class CampaignOut(BaseModel):
    """A campaign and its progress: ``processed`` of ``total`` guests fanned out into
    ``created`` deliveries, and its deliveries by status."""

    id: str
    name: str
    status: str
    template_id: str
    event_id: str | None
    audience_id: str | None
    filter: str
    dedupe_households: bool
    channels: list[str]
    priority: PriorityName
    variables: dict[str, Any]
    schedule: dict[str, Any]
    recurrence: dict[str, Any] | None
    cancellation_key: str | None = Field(
        description="with a `while` recurrence, each guest's deliveries carry the key "
        "`<this>:<contact hex>`"
    )
    message_id: str | None
    total: int
    processed: int
    created: int
    progress: float = Field(description="processed / total, 0 to 1")
    counts: dict[str, int] = Field(description="deliveries by status")
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CampaignSummary(BaseModel):
    """A campaign in a list."""

    id: str
    name: str
    status: str
    total: int
    processed: int
    created: int
    created_at: datetime


class CampaignPage(BaseModel):
    """One page of campaigns, oldest first."""

    items: list[CampaignSummary]
    next_cursor: str | None


class SampleGuest(BaseModel):
    """One guest the campaign would reach, and the zone their send times are computed in."""

    contact_id: str
    timezone: str


class ZoneInstants(BaseModel):
    """The first send times of one time zone."""

    timezone: str
    instants: list[datetime]


class CampaignPreview(BaseModel):
    """What starting the campaign now would do."""

    count: int = Field(description="guests the audience matches now")
    sample: list[SampleGuest]
    schedule: list[ZoneInstants] = Field(
        description="the first send times in each zone of the sample, and the fallback zone"
    )


class CampaignControl(BaseModel):
    """What pause, resume or cancel did to the campaign's deliveries."""

    id: str
    status: str
    changed: int = Field(description="deliveries held, released or cancelled by this call")
    not_changed: int = Field(
        description="deliveries already claimed by a worker or finished: a claimed one may "
        "still be sent"
    )


class CancelByKey(BaseModel):
    """Cancel every unclaimed delivery that carries this key."""

    model_config = ConfigDict(extra="forbid")

    cancellation_key: str = Field(min_length=1, max_length=200)


class CancelByKeyResult(BaseModel):
    """How many deliveries with the key were cancelled (those already claimed may still go)."""

    cancellation_key: str
    cancelled: int
