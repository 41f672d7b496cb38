"""API shapes for campaigns, their preview and progress, and cancelling by key."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


class VariantSpec(BaseModel):
    """One arm of an experiment: another template (e.g. a clone with another subject line)
    and/or another first channel than the campaign's, and its share of the traffic."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50)
    template_id: str | None = Field(default=None, description="default: the campaign's")
    channel: Channel | None = Field(
        default=None,
        description="the channel tried first, one of the campaign's channels (later ones "
        "are still the fall-back); default: the campaign's first",
    )
    weight: float = Field(default=1.0, gt=0, le=1000)


class ExperimentSpec(BaseModel):
    """An A/B test over the campaign's guests (docs/experiments.md): each guest is assigned
    an arm by a hash of the campaign and the contact, so a re-run never moves them."""

    model_config = ConfigDict(extra="forbid")

    variants: list[VariantSpec] = Field(min_length=2, max_length=5)
    metric: Literal["open", "click"] = Field(
        default="open", description="what counts as a success: a unique human open or click"
    )
    confidence: float = Field(default=0.95, ge=0.90, le=0.999)
    min_sample_per_arm: int = Field(default=200, ge=10, le=1_000_000)
    mode: Literal["fixed", "thompson"] = Field(
        default="fixed",
        description="thompson: each batch of the fan-out shifts traffic to the arm likeliest "
        "to be best so far (at least 5% to every arm)",
    )
    test_fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="send the experiment to this share of the guests first; the rest get "
        "the winner once it is declared, or the first variant after wait_hours",
    )
    wait_hours: float = Field(default=4.0, gt=0, le=168)

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, value: list[VariantSpec]) -> list[VariantSpec]:
        if len({v.name for v in value}) != len(value):
            raise ValueError("variant names must be unique")
        return value


#: where in campaigns.experiment a running experiment keeps its phase, beside the spec
EXPERIMENT_STATE = "state"


def experiment_spec(stored: dict[str, Any]) -> ExperimentSpec:
    """The experiment as it was asked for, from its stored JSON (the run's state left out)."""
    return ExperimentSpec.model_validate({k: v for k, v in stored.items() if k != EXPERIMENT_STATE})


class SendTimeSpec(BaseModel):
    """Send each guest at their best time within a window that opens at the campaign's
    scheduled time (docs/send-time.md)."""

    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(default=24.0, ge=1, le=168)
    max_share: float = Field(
        default=0.2, gt=0, le=1, description="at most this share of the guests in one hour"
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
    experiment: ExperimentSpec | None = None
    send_time: SendTimeSpec | None = None


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
    experiment: ExperimentSpec | None = None
    send_time: SendTimeSpec | None = None

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
    experiment: dict[str, Any] | None
    send_time: dict[str, Any] | None
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


class ArmResult(BaseModel):
    """One arm of an experiment so far."""

    name: str
    sent: int
    successes: int
    rate: float
    interval: tuple[float, float] = Field(description="Wilson interval at the confidence")
    probability_best: float


class ExperimentResult(BaseModel):
    """An experiment's arms, and the decision of the sequential test with its reason."""

    status: str = Field(description="waiting, running, winner or inconclusive")
    phase: str = Field(description="test (the test fraction) or rollout (everyone else)")
    winner: str | None
    reason: str
    metric: str
    confidence: float
    arms: list[ArmResult]
