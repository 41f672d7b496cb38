"""OutboxMessage: one rendered email kept by the dev outbox instead of being sent."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedText


class OutboxMessage(Base):
    """A message the dev outbox provider accepted, as the guest would have received it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_org_id", "organization_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[uuid.UUID] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(20))
    message_id_header: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(EncryptedText("outbox_messages.recipient"))
    subject: Mapped[str] = mapped_column(EncryptedText("outbox_messages.subject"), default="")
    text: Mapped[str | None] = mapped_column(EncryptedText("outbox_messages.text"), default=None)
    html: Mapped[str | None] = mapped_column(EncryptedText("outbox_messages.html"), default=None)
