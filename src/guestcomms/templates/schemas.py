"""API shapes for templates and their versions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from guestcomms.domain.enums import Channel

MAX_PART_CHARS = 512 * 1024


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
