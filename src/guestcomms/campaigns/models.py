"""Campaign: a template sent to an audience on a schedule, fanned out into deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, SmallInteger, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.domain.clock import utc_now


class CampaignStatus(StrEnum):
    """Where a campaign is: ``running`` while it fans out, ``completed`` once every guest has
    their deliveries (which then go out on their own schedule)."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"  # fan-out stopped and unclaimed deliveries held until resumed
    COMPLETED = "completed"
    # an experiment's test fraction is out: waiting for a winner (or its wait) to roll out
    TESTING = "testing"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the fan-out stopped on an error (``error`` says which)


#: statuses in which a campaign's deliveries may still go out (reminders are rechecked)
ACTIVE = (
    CampaignStatus.RUNNING,
    CampaignStatus.PAUSED,
    CampaignStatus.COMPLETED,
    CampaignStatus.TESTING,
)


class Campaign(Base):
    """One campaign. Its fan-out is resumable: ``cursor`` is the last contact written, in
    the same transaction as that batch's deliveries, so a crash never writes a guest twice."""

    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_org_id", "organization_id", "id"),
        Index("ix_campaigns_status", "status"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), default=None
    )
    audience_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("audiences.id", ondelete="SET NULL"), default=None
    )
    filter: Mapped[str] = mapped_column(Text, default="")  # inline filter, and-ed with audience's
    dedupe_households: Mapped[bool] = mapped_column(default=False)
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id"))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(SmallInteger)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # an A/B experiment: {"variants": [...], "confidence": ..., ...}; see campaigns/experiment.py
    experiment: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # send each guest at their best time: {"window_hours": ..., "max_share": ...}
    send_time: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # {"at": iso instant} | {"local_time": "10:00", "date": "2026-06-01"}
    # | {"local_time": "10:00", "days_before_event": 14}; see domain/schedule.py
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {"every_days": 3, "count": 4, "while": 'rsvp = "pending"'} or None
    recurrence: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # with a "while" recurrence: the prefix of its deliveries' keys (``cmp_<hex>``, then
    # ``:<contact hex>``, see domain.schedule.cancellation_key); None otherwise
    cancellation_key: Mapped[str | None] = mapped_column(String(100), default=None)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    total: Mapped[int] = mapped_column(default=0)  # audience size when started
    processed: Mapped[int] = mapped_column(default=0)  # contacts the fan-out has gone past
    created: Mapped[int] = mapped_column(default=0)  # deliveries written
    cursor: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # the runner fanning it out holds a lease, as a worker holds a delivery's
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
