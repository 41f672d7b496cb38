"""InboxItem: one in-app message for one contact, with read and acknowledgement times."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedText


class InboxItem(Base):
    """A message in a contact's in-app inbox."""

    __tablename__ = "inbox_items"
    __table_args__ = (Index("ix_inbox_items_contact", "organization_id", "contact_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    delivery_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    title: Mapped[str] = mapped_column(EncryptedText("inbox_items.title"))
    body: Mapped[str] = mapped_column(EncryptedText("inbox_items.body"))
    url: Mapped[str | None] = mapped_column(String(2000), default=None)
    requires_ack: Mapped[bool] = mapped_column(default=False)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    acked_at: Mapped[datetime | None] = mapped_column(default=None)
