"""TrackingEvent: one open (pixel fetch) or click (redirect) of a delivery, machine or human."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base


class TrackingEvent(Base):
    """An open or a click, with the verdict of the machine rules (``tracking.machine``):
    machine events are kept, flagged, and left out of engagement rates by default."""

    __tablename__ = "tracking_events"
    __table_args__ = (
        Index("ix_tracking_events_delivery", "organization_id", "delivery_id", "kind"),
        Index("ix_tracking_events_org_created", "organization_id", "created_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # no foreign key, as for deliveries' copies: one trigger less per pixel fetch
    delivery_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(10))  # open | click
    link_index: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)  # a click's target
    machine: Mapped[bool] = mapped_column(default=False)
    machine_reason: Mapped[str | None] = mapped_column(String(30), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
