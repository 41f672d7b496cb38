"""What a template sees of an event and of the recipient's part in it (``event``, ``guest``).

The composer calls :func:`load_event_context` once per claimed batch: two queries whatever
the batch size (the batch's events; the guest rows of its recipients with their household
names). Events are read each time rather than cached, as a planner may change the venue or
the time up to the day itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.events.models import Event, EventGuest, Household

CONTACTS_PER_QUERY = 1000  # ids per IN list: well under either database's parameter limit

# what ``guest`` holds for a recipient who is not in the message's event, so that
# ``{% if guest.table %}`` reads as "no table" instead of failing the render
NOT_A_GUEST: dict[str, Any] = {
    "rsvp": None,
    "role": None,
    "side": None,
    "table": None,
    "dietary": None,
    "household": None,
    "attributes": {},
}


@dataclass(frozen=True, slots=True)
class EventContext:
    """The ``event`` of each event id, and the ``guest`` of each (event id, contact id)."""

    events: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    guests: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = field(default_factory=dict)

    def event(self, event_id: uuid.UUID | None) -> dict[str, Any] | None:
        """The template's ``event``, or ``None`` (no event: the name stays undefined)."""
        return None if event_id is None else self.events.get(event_id)

    def guest(self, event_id: uuid.UUID | None, contact_id: uuid.UUID) -> dict[str, Any] | None:
        """The template's ``guest`` (``NOT_A_GUEST`` when the contact is not in the event)."""
        if event_id is None or event_id not in self.events:
            return None
        found = self.guests.get((event_id, contact_id))
        return dict(NOT_A_GUEST) if found is None else found


def event_fields(event: Any) -> dict[str, Any]:
    """The template view of an event row (``date`` is a date; ``start_time`` reads HH:MM)."""
    location = event.location or {}
    return {
        "name": event.name,
        "date": event.date,
        "start_time": event.start_time.strftime("%H:%M") if event.start_time else None,
        "timezone": event.timezone,
        "starts_at": event.starts_at,
        "venue": event.venue,
        "outdoor": event.outdoor,
        "location": {key: location.get(key) for key in ("address", "latitude", "longitude")},
        "attributes": dict(event.attributes or {}),
    }


async def load_event_context(
    session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> EventContext:
    """Read the events and guest rows of ``pairs`` of (event id, contact id)."""
    wanted = sorted(set(pairs))
    if not wanted:
        return EventContext()
    event_ids = {event_id for event_id, _ in wanted}
    rows = await session.execute(select(Event).where(Event.id.in_(event_ids)))
    context = EventContext(events={e.id: event_fields(e) for e in rows.scalars()})
    contact_ids = sorted({contact_id for _, contact_id in wanted})
    for start in range(0, len(contact_ids), CONTACTS_PER_QUERY):
        # a batch rarely spans more than one event, so events x contacts is the exact set
        guests = await session.execute(
            select(EventGuest, Household.name)
            .outerjoin(Household, Household.id == EventGuest.household_id)
            .where(
                EventGuest.event_id.in_(event_ids),
                EventGuest.contact_id.in_(contact_ids[start : start + CONTACTS_PER_QUERY]),
            )
        )
        for guest, household in guests:
            context.guests[(guest.event_id, guest.contact_id)] = {
                "rsvp": guest.rsvp,
                "role": guest.role,
                "side": guest.side,
                "table": guest.table_name,
                "dietary": guest.dietary,
                "household": household,
                "attributes": dict(guest.attributes or {}),
            }
    return context
