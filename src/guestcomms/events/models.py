"""Event, Household and EventGuest (a contact's part in one event: guest or vendor, RSVP...)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedText
from guestcomms.domain.clock import utc_now


class Event(Base):
    """A wedding or other occasion, on a local date (and time) in its own IANA time zone."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_org_id", "organization_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    date: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time | None] = mapped_column(Time, default=None)  # local wall clock
    timezone: Mapped[str] = mapped_column(String(64))
    # the instant the event starts (date + start_time, or midnight, in ``timezone``)
    starts_at: Mapped[datetime]
    venue: Mapped[str | None] = mapped_column(String(300), default=None)
    outdoor: Mapped[bool] = mapped_column(default=False)
    # {"address": str, "latitude": float, "longitude": float}, each optional
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class Household(Base):
    """Guests who share one address (a guest and their plus-ones): one invitation each when
    an audience asks for household de-duplication."""

    __tablename__ = "households"
    __table_args__ = (Index("ix_households_org_event", "organization_id", "event_id", "id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(EncryptedText("households.address"), default=None)


class EventGuest(Base):
    """One contact's part in one event: guest or vendor, household, RSVP, side, table..."""

    __tablename__ = "event_guests"
    __table_args__ = (
        UniqueConstraint("event_id", "contact_id", name="uq_event_guests_event_contact"),
        Index("ix_event_guests_org_event", "organization_id", "event_id", "contact_id"),
        Index("ix_event_guests_contact", "contact_id"),
        # household de-duplication looks for a household's lowest matching member
        Index("ix_event_guests_household", "event_id", "household_id", "contact_id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(10), default="guest")  # guest | vendor
    household_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("households.id", ondelete="SET NULL"), default=None
    )
    rsvp: Mapped[str] = mapped_column(String(10), default="pending")  # pending|yes|no|maybe
    rsvp_at: Mapped[datetime | None] = mapped_column(default=None)
    side: Mapped[str | None] = mapped_column(String(50), default=None)
    table_name: Mapped[str | None] = mapped_column(String(50), default=None)
    dietary: Mapped[str | None] = mapped_column(Text, default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
