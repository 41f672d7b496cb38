"""Contact and its tags (a side table, so "contacts tagged X" is an indexed look-up)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.domain.clock import utc_now


class Contact(Base):
    """A guest or vendor of one organization."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("organization_id", "email", name="uq_contacts_org_email"),
        Index("ix_contacts_org_id", "organization_id", "id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    locale: Mapped[str | None] = mapped_column(String(35), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    # Web Push subscriptions ({endpoint, keys: {p256dh, auth}}) and FCM tokens ({fcm_token})
    push_subscriptions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class ContactTag(Base):
    """One tag of one contact; mirrors ``Contact.tags`` for indexed selection."""

    __tablename__ = "contact_tags"
    __table_args__ = (
        UniqueConstraint("contact_id", "tag", name="uq_contact_tags_contact_tag"),
        Index("ix_contact_tags_org_tag", "organization_id", "tag", "contact_id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(100))
