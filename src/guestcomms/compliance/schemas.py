"""API shapes for consents, suppressions and the organization's compliance settings. Unknown
fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ConsentChannel = Literal["email", "sms", "voice", "push", "inapp", "webhook"]
SuppressionChannel = Literal["email", "sms"]
Text = Annotated[str, Field(min_length=1, max_length=100)]


class ConsentCreate(BaseModel):
    """A new consent version for one channel and purpose."""

    model_config = ConfigDict(extra="forbid")

    channel: ConsentChannel
    purpose: Literal["transactional", "marketing"]
    granted: bool
    source: Text = Field(examples=["rsvp-form"])
    proof: dict[str, Any] | None = Field(
        default=None, examples=[{"ip": "203.0.113.7", "form": "rsvp-v2", "checkbox": True}]
    )


class ConsentOut(BaseModel):
    """One consent version."""

    id: str
    contact_id: str
    channel: str
    purpose: str
    granted: bool
    version: int
    source: str
    proof: dict[str, Any] | None
    created_at: datetime


class ConsentHistory(BaseModel):
    """Every consent version of a contact, oldest first per channel and purpose."""

    items: list[ConsentOut]


class SuppressionCreate(BaseModel):
    """A manual suppression of one address on one channel."""

    model_config = ConfigDict(extra="forbid")

    channel: SuppressionChannel
    address: str = Field(min_length=3, max_length=320)
    reason: Literal["manual", "unsubscribe", "hard_bounce", "complaint", "stop"] = "manual"
    note: str | None = Field(default=None, max_length=500)


class SuppressionOut(BaseModel):
    """One suppressed address."""

    id: str
    channel: str
    address: str
    reason: str
    source: str | None
    detail: dict[str, Any] | None
    created_at: datetime


class SuppressionPage(BaseModel):
    """One page of suppressions; pass ``next_cursor`` as ``after`` for the next."""

    items: list[SuppressionOut]
    next_cursor: str | None


class QuietHoursSetting(BaseModel):
    """The window, in each recipient's zone, in which non-emergency SMS and calls go out;
    outside it they wait for ``start``. ``end`` before ``start`` crosses midnight."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(default="21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    enabled: bool = True  # false: no quiet hours for this organization


class FrequencyCapSetting(BaseModel):
    """At most ``count`` sends to one contact on the channel in ``hours`` hours."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=1000)
    hours: float = Field(gt=0, le=744)


class ComplianceSettings(BaseModel):
    """The organization's sender identity, shown in every marketing email's footer and
    required before any marketing send."""

    model_config = ConfigDict(extra="forbid")

    sender_name: str | None = Field(default=None, max_length=200, examples=["Ana & Ben"])
    physical_address: str | None = Field(
        default=None, max_length=500, examples=["1 Via Roma, 22021 Bellagio, Italy"]
    )
    # SMS rules (engine/pacing.py, inbound keywords): see docs/api.md
    sms_help_text: str | None = Field(
        default=None, max_length=320, examples=["Ana & Ben's wedding: call +1 202 555 0100"]
    )
    quiet_hours: QuietHoursSetting | None = None
    frequency_caps: dict[ConsentChannel, FrequencyCapSetting] | None = None
    # open pixel and click redirects in emails (tracking/): on unless set to false here or
    # in a message's `tracking`; read back as true or false, `null` in a change means true
    tracking: bool | None = None


class ComplianceSettingsUpdate(ComplianceSettings):
    """Changes to the settings: a field left out is kept, ``null`` clears it."""
