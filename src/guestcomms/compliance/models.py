"""Suppression: an address of one channel that receives nothing more (unsubscribe, hard bounce,
complaint, SMS STOP, manual); Consent: a versioned record of what a contact agreed to, per
channel and purpose; PrivacyRequest: an export, erasure or retention run, recorded."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON, EncryptedText
from guestcomms.security.protection import protection_for


class Suppression(Base):
    """One suppressed address on one channel of one organization."""

    __tablename__ = "suppressions"
    __table_args__ = (
        # the address may be encrypted: the keyed hash is what is unique and looked up
        UniqueConstraint(
            "organization_id",
            "channel",
            "address_hash",
            name="uq_suppressions_org_channel_address_hash",
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(EncryptedText("suppressions.address"))
    # keyed hash (HMAC) of the address: how suppressions are found; an erased contact's
    # suppression keeps only this, so a re-import of the same address is still suppressed
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(30))  # hard_bounce, complaint, unsubscribe, stop
    source: Mapped[str | None] = mapped_column(String(50), default=None)
    detail: Mapped[dict[str, Any] | None] = mapped_column(
        EncryptedJSON("suppressions.detail"), default=None
    )


@event.listens_for(Suppression, "before_insert")
def _hash_address(_mapper: Mapper[Suppression], connection: Connection, row: Suppression) -> None:
    if not row.address_hash:  # an erased contact's row keeps the hash it was given
        row.address_hash = (
            protection_for(connection.dialect).address_hash(row.channel, row.address) or ""
        )


class Consent(Base):
    """One version of a contact's consent for one channel and purpose (transactional or
    marketing), with where it came from and its proof; the newest version wins."""

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_contact", "contact_id", "channel", "purpose", "version"),
        Index("ix_consents_org", "organization_id", "id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(20))  # transactional | marketing
    granted: Mapped[bool]
    version: Mapped[int] = mapped_column(default=1)
    source: Mapped[str] = mapped_column(String(100))  # e.g. rsvp-form, import, api, sms-keyword
    proof: Mapped[dict[str, Any] | None] = mapped_column(
        EncryptedJSON("consents.proof"), default=None
    )


class PrivacyRequest(Base):
    """A privacy request carried out (export, erasure, retention purge), kept as a record."""

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_org", "organization_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # null once the contact is erased; the request keeps only the keyed hash in ``detail``
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(20))  # export | erase | retention
    status: Mapped[str] = mapped_column(String(20), default="done")
    actor: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
