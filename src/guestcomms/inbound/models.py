"""InboundEventRecord: one provider event already applied, so a replayed webhook is a no-op."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON


class InboundEventRecord(Base):
    """A provider event, keyed by ``(organization, provider, event_id)``; applied once."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint(
            "organization_id", "provider", "event_id", name="uq_inbound_events_org_provider_event"
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    provider: Mapped[str] = mapped_column(String(50))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(30))
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    raw: Mapped[dict[str, Any] | None] = mapped_column(
        EncryptedJSON("inbound_events.raw"), default=None
    )
