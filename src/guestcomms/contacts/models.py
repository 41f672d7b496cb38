"""Contact and its tags (a side table, so "contacts tagged X" is an indexed look-up)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON, EncryptedText
from guestcomms.domain.clock import utc_now
from guestcomms.security.protection import protection_for


class Contact(Base):
    """A guest or vendor of one organization."""

    __tablename__ = "contacts"
    __table_args__ = (
        # email and phone may be encrypted (random nonces): uniqueness and look-ups use the
        # keyed hashes, which are kept whether or not encryption is on
        UniqueConstraint("organization_id", "email_hash", name="uq_contacts_org_email_hash"),
        Index("ix_contacts_org_phone_hash", "organization_id", "phone_hash"),
        Index("ix_contacts_org_id", "organization_id", "id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    email: Mapped[str | None] = mapped_column(EncryptedText("contacts.email"), default=None)
    phone: Mapped[str | None] = mapped_column(EncryptedText("contacts.phone"), default=None)
    email_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    phone_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    first_name: Mapped[str | None] = mapped_column(
        EncryptedText("contacts.first_name"), default=None
    )
    last_name: Mapped[str | None] = mapped_column(EncryptedText("contacts.last_name"), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    locale: Mapped[str | None] = mapped_column(String(35), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(
        EncryptedJSON("contacts.attributes"), default=dict
    )
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    # Web Push subscriptions ({endpoint, keys: {p256dh, auth}}) and FCM tokens ({fcm_token})
    push_subscriptions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


PHONE_HASH_CHANNEL = "phone"  # the hash domain of contacts.phone_hash


@event.listens_for(Contact, "before_insert")
@event.listens_for(Contact, "before_update")
def _hash_addresses(_mapper: Mapper[Contact], connection: Connection, contact: Contact) -> None:
    # every ORM write keeps the look-up hashes in step with the (maybe encrypted) addresses;
    # bulk writes set them in ContactRepository
    protection = protection_for(connection.dialect)
    contact.email_hash = protection.address_hash("email", contact.email)
    contact.phone_hash = protection.address_hash(PHONE_HASH_CHANNEL, contact.phone)


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
