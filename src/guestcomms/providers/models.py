"""ProviderAccount (a configured provider of one organization), ChannelRoute (the strategy per
channel) and OperationalEvent (things an operator must act on, such as refused credentials)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON
from guestcomms.domain.clock import utc_now


class ProviderAccount(Base):
    """One provider account: kind (sendgrid, twilio_sms...), settings, secret credentials,
    and its place in routing (priority, weight, cost) and rate limit."""

    __tablename__ = "provider_accounts"
    __table_args__ = (
        UniqueConstraint("organization_id", "name", name="uq_provider_accounts_org_name"),
        Index("ix_provider_accounts_org_channel", "organization_id", "channel"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(50))
    channel: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials: Mapped[dict[str, Any]] = mapped_column(  # never returned
        EncryptedJSON("provider_accounts.credentials"), default=dict
    )
    priority: Mapped[int] = mapped_column(default=0)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    cost_per_message: Mapped[float | None] = mapped_column(Float, default=None)
    rate_per_second: Mapped[float | None] = mapped_column(Float, default=None)
    burst: Mapped[int | None] = mapped_column(default=None)
    enabled: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(30), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class ChannelRoute(Base):
    """How one organization picks among its providers for one channel."""

    __tablename__ = "channel_routes"
    __table_args__ = (
        UniqueConstraint("organization_id", "channel", name="uq_channel_routes_org_channel"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(20))
    strategy: Mapped[str] = mapped_column(String(30), default="priority")


class OperationalEvent(Base):
    """Something an operator must see and act on (a provider refusing our credentials...)."""

    __tablename__ = "operational_events"
    __table_args__ = (Index("ix_operational_events_org_id", "organization_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
