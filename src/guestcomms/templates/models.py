"""Template (a named, per-channel piece of content) and TemplateVersion (immutable content)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base


class Template(Base):
    """A named template of one organization; its content lives in versions."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_templates_org_name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(100), default=None)
    latest_version: Mapped[int] = mapped_column(default=0)


class TemplateVersion(Base):
    """One immutable version of a template's content; deliveries record which they used."""

    __tablename__ = "template_versions"
    __table_args__ = (
        UniqueConstraint("template_id", "version", name="uq_template_versions_template_version"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    version: Mapped[int]
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    # other channels' content: {"sms": {"body"}, "push": {"title", "body", "url"},
    # "voice": {"say"}, "inapp": {"title", "body", "url"}, "webhook": {"event_type"}}
    channel_content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # locale variants: {"fr": {"subject", "html", "text", "channel_content"}}, chosen from
    # the contact's locale (fr-CA -> fr -> the default content above)
    locales: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
