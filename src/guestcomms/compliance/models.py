"""Suppression: an address of one channel that receives nothing more (unsubscribe, hard bounce,
complaint, SMS STOP, manual)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base


class Suppression(Base):
    """One suppressed address on one channel of one organization."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint(
            "organization_id", "channel", "address", name="uq_suppressions_org_channel_address"
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(30))  # hard_bounce, complaint, unsubscribe, stop
    source: Mapped[str | None] = mapped_column(String(50), default=None)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
