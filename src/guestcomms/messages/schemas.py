"""API shapes for messages and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from guestcomms.domain.enums import Channel

PriorityName = Literal["emergency", "high", "normal", "low"]


class RecipientIn(BaseModel):
    """One recipient with variables for them alone."""

    model_config = ConfigDict(extra="forbid")

    contact_id: str = Field(examples=["ct_0193..."])
    variables: dict[str, Any] = Field(default_factory=dict)


class MessageCreate(BaseModel):
    """A send request: a template to contacts, given by id, with variables, or by tags."""

    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(examples=["tpl_0193..."])
    contact_ids: list[str] = Field(default_factory=list, description="recipients by id")
    recipients: list[RecipientIn] = Field(
        default_factory=list, description="recipients with per-recipient variables"
    )
    tags: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="also every contact carrying ALL these tags",
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="values for the template's declared variables"
    )
    channels: list[Channel] | None = Field(
        default=None,
        min_length=1,
        max_length=6,
        description="channels in order of preference; a recipient without an address for one "
        "gets the next (default: the template's channel)",
        examples=[["push", "sms", "email"]],
    )
    priority: PriorityName = "normal"
    send_at: AwareDatetime | None = Field(
        default=None, description="when to send (with a UTC offset); now if absent"
    )
    event_id: str | None = Field(
        default=None,
        description="the event the message is about: templates can then use `event` and "
        "`guest` (the recipient's RSVP, table...)",
        examples=["evt_0193..."],
    )
    tracking: bool = Field(
        default=True,
        description="an open pixel and click redirects in its emails (also off when the "
        "organization's settings say `tracking: false`)",
    )


class MessageAccepted(BaseModel):
    """The answer to a send request: the message and how many deliveries it made."""

    id: str
    status: str
    template_id: str
    template_version: int
    channel: str
    channels: list[str]
    priority: PriorityName
    send_at: datetime
    recipient_count: int
    created_at: datetime


class DeliveryEventOut(BaseModel):
    """One entry of a delivery's history."""

    type: str
    at: datetime
    detail: dict[str, Any] | None = None


class DeliveryOut(BaseModel):
    """One recipient x channel, with its history."""

    id: str
    contact_id: str
    channel: str
    status: str
    attempts: int
    send_at: datetime
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    experiment_arm: int | None = Field(
        default=None, description="the campaign experiment's arm (index of its variant)"
    )
    send_time_confidence: float | None = Field(
        default=None,
        description="send-time optimisation: the share of the chosen send_at resting on the "
        "guest's own history (0: the event's or organization's pattern alone)",
    )
    updated_at: datetime
    events: list[DeliveryEventOut]


class DeliveryPage(BaseModel):
    """One page of deliveries."""

    items: list[DeliveryOut]
    next_cursor: str | None


class MessageOut(MessageAccepted):
    """A message with delivery counts by status and a page of its deliveries."""

    counts: dict[str, int]
    deliveries: list[DeliveryOut]
    next_deliveries_cursor: str | None


class MessageSummary(MessageAccepted):
    """A message in a list (no deliveries)."""


class MessagePage(BaseModel):
    """One page of messages, newest first."""

    items: list[MessageSummary]
    next_cursor: str | None


class CancelResult(BaseModel):
    """What a cancel did: deliveries stopped, and those already past the point of no return."""

    id: str
    status: str
    cancelled: int
    not_cancelled: int
