"""Message, Delivery (the unit of work: the queue row), DeliveryEvent and IdempotencyRecord."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON, EncryptedText
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import CLAIMABLE

_CLAIMABLE_SQL = "status IN (" + ", ".join(f"'{s.value}'" for s in CLAIMABLE) + ")"


class Message(Base):
    """One send request: a template to some recipients on one channel."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_org_id", "organization_id", "id"),
        Index("ix_messages_campaign", "campaign_id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id"))
    template_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("template_versions.id"))
    channel: Mapped[str] = mapped_column(String(20))
    # channels in order of preference; a recipient without an address for one falls through
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(SmallInteger)
    send_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20))
    variables: Mapped[dict[str, Any]] = mapped_column(
        EncryptedJSON("messages.variables"), default=dict
    )
    recipient_count: Mapped[int] = mapped_column(default=0)
    # open pixel and click redirects in its emails (also off when the organization's
    # settings say "tracking": false)
    tracking: Mapped[bool] = mapped_column(default=True, server_default=true())
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), default=None
    )
    event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL"), default=None
    )
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)


class Delivery(Base):
    """One recipient x one channel: the queue row, claimed under a lease by a worker."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Serves the fair claim (db/queue.py): a skip scan finds the organizations with
        # claimable rows, then each one's oldest due rows by priority. It replaced
        # (priority, send_at): one claim index, since each slows every fan-out insert.
        Index(
            "ix_deliveries_claim",
            "organization_id",
            "priority",
            "send_at",
            sqlite_where=text(_CLAIMABLE_SQL),
            postgresql_where=text(_CLAIMABLE_SQL),
        ),
        Index(
            "ix_deliveries_lease",
            "lease_until",
            sqlite_where=text("status = 'sending'"),
            postgresql_where=text("status = 'sending'"),
        ),
        Index("ix_deliveries_message", "message_id", "id"),
        Index("ix_deliveries_org_status", "organization_id", "status"),
        Index("ix_deliveries_provider_message", "organization_id", "provider_message_id"),
        # frequency caps' count of recent sends per contact, and the cascade from contacts
        Index("ix_deliveries_contact", "contact_id"),
        UniqueConstraint("idempotency_key", name="uq_deliveries_idempotency_key"),
        Index(
            "ix_deliveries_cancellation_key",
            "organization_id",
            "cancellation_key",
            sqlite_where=text("cancellation_key IS NOT NULL"),
            postgresql_where=text("cancellation_key IS NOT NULL"),
        ),
    )

    # organization_id and template_version_id are the message's, copied for the claim and
    # usage queries; no foreign key of their own (the message's already holds them), because
    # each foreign key is a trigger per inserted row: ~25% of a campaign's fan-out on PostgreSQL
    organization_id: Mapped[uuid.UUID]
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(SmallInteger)
    send_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    provider: Mapped[str | None] = mapped_column(String(50), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    template_version_id: Mapped[uuid.UUID]
    # per-recipient values (often a guest's name): personal, so encrypted at rest
    variables: Mapped[dict[str, Any] | None] = mapped_column(
        EncryptedJSON("deliveries.variables"), default=None
    )
    last_error: Mapped[str | None] = mapped_column(
        EncryptedText("deliveries.last_error"), default=None
    )
    # scheduled deliveries sharing a key are cancelled together (e.g. a guest's RSVP
    # reminders once they answer); see campaigns
    cancellation_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # an experiment's arm (index into the campaign's variants), when the campaign runs one
    experiment_arm: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    # send-time optimisation: how much of the chosen send_at came from the guest's own
    # history (0: the event's or organization's pattern alone); None: not optimised
    send_time_confidence: Mapped[float | None] = mapped_column(Float, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class DeliveryEvent(Base):
    """Append-only history of one delivery."""

    __tablename__ = "delivery_events"
    __table_args__ = (Index("ix_delivery_events_delivery", "delivery_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(30))
    detail: Mapped[dict[str, Any] | None] = mapped_column(
        EncryptedJSON("delivery_events.detail"), default=None
    )


class IdempotencyRecord(Base):
    """The first response to a POST made with an Idempotency-Key, replayed for repeats."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("organization_id", "key", name="uq_idempotency_records_org_key"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("idempotency_records.response"))
