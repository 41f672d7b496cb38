"""API shapes for templates and their versions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from guestcomms.domain.enums import Channel

MAX_PART_CHARS = 512 * 1024
MAX_LOCALES = 100  # locale variants per version
MAX_BULK_ITEMS = 500  # creates, updates and deletes each, per bulk request
MAX_IMPORTED_TEMPLATES = 1000  # templates per import document
EXPORT_FORMAT: Final = "guestcomms.templates"
EXPORT_FORMAT_VERSION: Final = 1


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


class LocaleContent(_Part):
    """A locale variant's overrides. Email content (subject, html, text) replaces the base's
    as a whole when a subject is given; each channel in ``channel_content`` replaces the
    base's content for that channel. What a variant leaves out comes from the base."""

    subject: str | None = Field(default=None, max_length=998)
    html: str | None = Field(default=None, max_length=MAX_PART_CHARS)
    text: str | None = Field(default=None, max_length=MAX_PART_CHARS)
    channel_content: ChannelContent | None = None


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
    locales: dict[str, LocaleContent] | None = Field(
        default=None,
        max_length=MAX_LOCALES,
        description="variants by locale tag (`fr`, `fr-CA`); a contact gets its locale's, "
        "else its language's, else the organization default's, else the base content",
        examples=[{"fr": {"subject": "Vous êtes invité, {{ first_name }} !", "text": "..."}}],
    )


Category = Annotated[str, Field(min_length=1, max_length=100, examples=["invitations"])]


class TemplateCreate(TemplateContent):
    """A new template and its first version."""

    name: str = Field(min_length=1, max_length=200, examples=["invitation"])
    channel: Channel = Channel.EMAIL
    category: Category | None = None


class TemplatePatch(BaseModel):
    """Changes to a template: a new name or category (``null`` clears it), and new content,
    which becomes a new version."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: Category | None = None
    content: TemplateContent | None = None


class TemplateBulkUpdate(TemplatePatch):
    """One update of a bulk request."""

    id: str = Field(examples=["tpl_0190f5a4c7b27d3e8a1b2c3d4e5f6a7b"])


class TemplateBulk(BaseModel):
    """Creates, updates and deletes applied in one transaction: all of them or none.
    Deletes run first, then updates, then creates, each in the order given."""

    model_config = ConfigDict(extra="forbid")

    create: list[TemplateCreate] = Field(default_factory=list, max_length=MAX_BULK_ITEMS)
    update: list[TemplateBulkUpdate] = Field(default_factory=list, max_length=MAX_BULK_ITEMS)
    delete: list[str] = Field(default_factory=list, max_length=MAX_BULK_ITEMS)


class TemplateClone(BaseModel):
    """The name (and category; the source's if left out) of a copy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["invitation (copy)"])
    category: Category | None = None


class TemplateVersionOut(BaseModel):
    """One immutable version."""

    id: str
    version: int
    subject: str | None
    html: str | None
    text: str | None
    variables: list[str]
    channel_content: dict[str, Any]
    locales: dict[str, Any]
    created_at: datetime


class TemplateOut(BaseModel):
    """A template with its latest version."""

    id: str
    name: str
    channel: Channel
    category: str | None
    latest_version: int
    created_at: datetime
    latest: TemplateVersionOut | None = None


class TemplatePage(BaseModel):
    """One page of templates."""

    items: list[TemplateOut]
    next_cursor: str | None


class TemplateBulkResult(BaseModel):
    """What a bulk request did."""

    created: list[TemplateOut]
    updated: list[TemplateOut]
    deleted: list[str]


# --- export and import -------------------------------------------------------------------


class ExportedVersion(BaseModel):
    """One version in an export document: its number and its whole content."""

    version: int
    subject: str | None
    html: str | None
    text: str | None
    variables: list[str]
    channel_content: dict[str, Any]
    locales: dict[str, Any]


class ExportedTemplate(BaseModel):
    """One template in an export document, with every version, oldest first."""

    name: str
    channel: Channel
    category: str | None
    versions: list[ExportedVersion]


class TemplateExport(BaseModel):
    """A portable document of templates; ``POST /v1/templates/import`` reads it back."""

    format: Literal["guestcomms.templates"] = EXPORT_FORMAT
    format_version: Literal[1] = EXPORT_FORMAT_VERSION
    exported_at: datetime
    templates: list[ExportedTemplate]


class ImportedVersion(TemplateContent):
    """A version to import: content checked exactly as when it is saved."""

    version: int | None = Field(default=None, ge=1, description="informative; kept in order")


class ImportedTemplate(BaseModel):
    """A template to import."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    channel: Channel = Channel.EMAIL
    category: Category | None = None
    versions: list[ImportedVersion] = Field(min_length=1, max_length=1000)


class TemplateImport(BaseModel):
    """An export document (``GET /v1/templates/export``)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["guestcomms.templates"]
    format_version: Literal[1]
    exported_at: datetime | None = None
    templates: list[ImportedTemplate] = Field(max_length=MAX_IMPORTED_TEMPLATES)


class ImportAction(StrEnum):
    """What an import did with one template."""

    CREATED = "created"  # no template had the name: created with every version
    NEW_VERSION = "new_version"  # the name existed: the document's latest version appended
    UNCHANGED = "unchanged"  # the name existed with the same latest content
    SKIPPED = "skipped"  # the name existed and mode=skip


class ImportMode(StrEnum):
    """What an import does when a template of the same name exists."""

    MERGE = "merge"  # append the document's latest version when its content differs
    SKIP = "skip"  # leave the existing template alone
    NEW_VERSION = "new_version"  # always append the document's latest version


class ImportedItem(BaseModel):
    """One template of an import and what happened to it."""

    name: str
    id: str
    action: ImportAction
    latest_version: int


class TemplateImportResult(BaseModel):
    """What an import did, template by template in document order."""

    items: list[ImportedItem]


# --- usage and preview -------------------------------------------------------------------


class VersionUsage(BaseModel):
    """How many deliveries one version produced, and their statuses now."""

    version: int
    id: str
    deliveries: int
    by_status: dict[str, int]


class TemplateUsage(BaseModel):
    """Deliveries produced by each version of a template."""

    template_id: str
    name: str
    deliveries: int
    versions: list[VersionUsage]


class TemplatePreview(BaseModel):
    """What to preview: a contact, the message variables, and optionally a version (default
    the latest), a channel (default the template's) and the event the message is about."""

    model_config = ConfigDict(extra="forbid")

    contact_id: str = Field(examples=["ct_0190f5a4c7b27d3e8a1b2c3d4e5f6a7b"])
    variables: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)  # an INTEGER column
    channel: Channel | None = None
    event_id: str | None = Field(
        default=None, description="render as a message about this event (`event`, `guest`)"
    )


class PreviewOut(BaseModel):
    """The content the worker would send to this contact. Email fills ``subject``, ``html``
    and ``text``; other channels fill ``title``/``body``/``url``, ``say`` or ``event_type``."""

    channel: Channel
    version: int
    variant: str | None = Field(description="the locale variant rendered; null: the base")
    locale: str = Field(description="the locale dates and numbers were formatted in")
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    say: str | None = None
    event_type: str | None = None
    skipped_channels: list[dict[str, str]] = Field(default_factory=list)
