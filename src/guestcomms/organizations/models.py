"""Organization (a tenant) and ApiKey (a hashed secret with a visible prefix and scopes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base


class Organization(Base):
    """A tenant: every other row belongs to exactly one."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    # the last fallback for scheduling in "each guest's own time" (contact, then event, then this)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(35), default="en")
    # compliance settings: sender identity and physical address (required before any
    # marketing send), SMS help text, quiet hours, frequency caps, retention; see compliance/
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiKey(Base):
    """An API key: only ``prefix`` and the SHA-256 of the secret are stored."""

    __tablename__ = "api_keys"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    # requests per minute for this key; None = the server's default
    rate_limit: Mapped[int | None] = mapped_column(default=None)
