"""Audience: a saved, named filter (in the audience filter language) over contacts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.domain.clock import utc_now


class Audience(Base):
    """A named filter; with ``event_id`` it ranges over that event's guests and vendors."""

    __tablename__ = "audiences"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_audiences_org_name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), default=None
    )
    filter: Mapped[str] = mapped_column(Text, default="")
    dedupe_households: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
