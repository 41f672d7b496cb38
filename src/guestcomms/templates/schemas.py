"""API shapes for templates and their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guestcomms.domain.enums import Channel

MAX_PART_CHARS = 512 * 1024


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmsContent(_Part):
    """An SMS body (GSM-7 fits 160 characters a segment; other text 70)."""

    body: str = Field(min_length=1, max_length=1600)


class PushContent(_Part):
    """A push notification."""

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=2000)
    url: str | None = Field(default=None, max_length=2000)


class VoiceContent(_Part):
    """What a voice call reads aloud."""

    say: str = Field(min_length=1, max_length=4000)


class InAppContent(_Part):
    """A message in the contact's in-app inbox."""

    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=10_000)
    url: str | None = Field(default=None, max_length=2000)
    requires_ack: bool = False


class WebhookContent(_Part):
    """What the webhook channel posts: an event type and a body, both templates."""

    event_type: str = Field(min_length=1, max_length=100, examples=["wedding.update"])
    body: str = Field(min_length=1, max_length=10_000)


class ChannelContent(_Part):
    """Content for channels other than email; every text is a template like the email's."""

    sms: SmsContent | None = None
    push: PushContent | None = None
    voice: VoiceContent | None = None
    inapp: InAppContent | None = None
    webhook: WebhookContent | None = None


class TemplateContent(BaseModel):
    """The content of one version. Variables are the names a message must (or may) supply."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(
        default=None, max_length=998, examples=["You're invited, {{ first_name }}!"]
    )
    html: str | None = Field(default=None, max_length=MAX_PART_CHARS)
    text: str | None = Field(default=None, max_length=MAX_PART_CHARS)
    variables: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="names used in the content besides contact fields",
        examples=[["venue", "rsvp_url"]],
    )
    channel_content: ChannelContent | None = Field(
        default=None, description="content for sms, push, voice and in-app"
    )


class TemplateCreate(TemplateContent):
    """A new template and its first version."""

    name: str = Field(min_length=1, max_length=200, examples=["invitation"])
    channel: Channel = Channel.EMAIL


class TemplateVersionOut(BaseModel):
    """One immutable version."""

    id: str
    version: int
    subject: str | None
    html: str | None
    text: str | None
    variables: list[str]
    channel_content: dict[str, Any]
    created_at: datetime


class TemplateOut(BaseModel):
    """A template with its latest version."""

    id: str
    name: str
    channel: Channel
    latest_version: int
    created_at: datetime
    latest: TemplateVersionOut | None = None


class TemplatePage(BaseModel):
    """One page of templates."""

    items: list[TemplateOut]
    next_cursor: str | None
