"""API shapes for contacts. Unknown fields are refused, so nobody can set ``organization_id``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from guestcomms.contacts.validation import check_timezone, normalize_email, normalize_phone

Tag = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[\w\-:.]+$")]


# CR, LF, the other control characters but tab, and the Unicode line separators
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _tags(values: list[str]) -> list[str]:
    return sorted(set(values))


class WebPushKeys(BaseModel):
    """The keys of a browser's PushSubscription."""

    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(min_length=1, max_length=200)
    auth: str = Field(min_length=1, max_length=100)


class PushSubscriptionIn(BaseModel):
    """A Web Push subscription (``endpoint`` and ``keys``, as ``PushSubscription.toJSON()``
    gives them) or an FCM registration token (``fcm_token``)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: AnyHttpUrl | None = None
    keys: WebPushKeys | None = None
    fcm_token: str | None = Field(default=None, max_length=4096)

    @model_validator(mode="after")
    def _one_kind(self) -> PushSubscriptionIn:
        web_push = self.endpoint is not None and self.keys is not None
        if web_push == (self.fcm_token is not None):
            raise ValueError("give either endpoint and keys (Web Push) or fcm_token (FCM)")
        return self


class _ContactFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(default=None, max_length=320, examples=["ana@example.com"])
    phone: str | None = Field(default=None, max_length=32, examples=["+447911123456"])
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/London"])
    locale: str | None = Field(default=None, max_length=35, examples=["en-GB"])
    attributes: dict[str, Any] | None = None
    tags: Annotated[list[Tag], AfterValidator(_tags)] | None = Field(default=None, max_length=100)
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="for the webhook channel: a registered webhook endpoint"
    )
    push_subscriptions: list[PushSubscriptionIn] | None = Field(
        default=None,
        max_length=10,
        description="Web Push subscriptions or FCM tokens, newest first",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        # national numbers need GUESTCOMMS_DEFAULT_PHONE_REGION; the service re-checks with it
        return normalize_phone(value) if value and value.startswith("+") else value or None

    @field_validator("first_name", "last_name")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # names go into the To header's display name: no line breaks or control characters
        if value is not None and _CONTROL_CHARS.search(value):
            raise ValueError("line breaks and control characters are not allowed")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value) if value else None


class ContactCreate(_ContactFields):
    """A new contact: at least an email or a phone."""


class ContactUpdate(_ContactFields):
    """A partial update: only the fields given change; ``null`` clears a field."""


class ContactOut(BaseModel):
    """A contact as the API shows it."""

    id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    attributes: dict[str, Any]
    tags: list[str]
    webhook_url: str | None = None
    push_subscriptions: int = Field(default=0, description="how many push subscriptions")
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    """One page of contacts; pass ``next_cursor`` as ``after`` for the next."""

    items: list[ContactOut]
    next_cursor: str | None


class RowError(BaseModel):
    """Why one row of an import was refused."""

    row: int = Field(description="1-based row number in the file (CSV: excluding the header)")
    field: str | None
    message: str


class ImportReport(BaseModel):
    """The outcome of a bulk import: rows created, updated, and refused with reasons; with an
    event, the contacts added to it or updated in it, and the households created for it."""

    created: int
    updated: int
    added_to_event: int = 0
    updated_in_event: int = 0
    households_created: int = 0
    errors: list[RowError]
