"""Every event, household and guest query, always scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select

from guestcomms.contacts.models import Contact
from guestcomms.db.repository import TenantRepository
from guestcomms.db.upsert import insert_many, planned_for_values, upsert
from guestcomms.events.models import Event, EventGuest, Household

_GUESTS = cast(Table, EventGuest.__table__)  # Core, for bulk reads and writes
_HOUSEHOLDS = cast(Table, Household.__table__)
IN_CHUNK = 1000  # ids per IN (...) list: well under either database's bind-parameter limit
# columns an import may change on an existing guest (the rest identify it)
GUEST_MUTABLE = ("role", "household_id", "rsvp", "rsvp_at", "side", "table_name", "dietary")


@dataclass(frozen=True, slots=True)
class GuestRow:
    """A guest row with the contact fields the API shows beside it."""

    guest: EventGuest
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


class EventRepository(TenantRepository[Event]):
    """Reads and writes the events, households and guests of ``organization_id`` only
    (``get``, ``page`` and ``flush`` of events come from ``TenantRepository``)."""

    model = Event

    # --- events ----------------------------------------------------------------------------

    def add(self, row: Event | Household | EventGuest) -> None:
        """Stage a new event, household or guest for insert, in this organization."""
        row.organization_id = self._org
        self._session.add(row)

    async def delete(self, row: Event | Household | EventGuest) -> None:
        """Delete the row (an event takes its households and guests with it)."""
        await self._session.delete(row)
        await self._session.flush()

    # --- households ------------------------------------------------------------------------

    async def household(self, event_id: uuid.UUID, household_id: uuid.UUID) -> Household | None:
        """The household of the event, or ``None``."""
        return await self._session.scalar(
            select(Household).where(
                Household.organization_id == self._org,
                Household.event_id == event_id,
                Household.id == household_id,
            )
        )

    async def households(
        self, event_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[Household]:
        """Up to ``limit`` households of the event in creation order, after ``after``."""
        stmt = select(Household).where(
            Household.organization_id == self._org, Household.event_id == event_id
        )
        if after is not None:
            stmt = stmt.where(Household.id > after)
        return (await self._session.scalars(stmt.order_by(Household.id).limit(limit))).all()

    async def household_names(self, event_id: uuid.UUID) -> dict[str, uuid.UUID]:
        """Every household of the event keyed by case-folded name (the oldest one when
        several share a name). Read whole: an event has at most a few thousand."""
        rows = await self._session.execute(
            select(Household.name, Household.id)
            .where(Household.organization_id == self._org, Household.event_id == event_id)
            .order_by(Household.id.desc())
        )
        return {name.casefold(): key for name, key in rows}

    async def insert_households(self, rows: list[dict[str, Any]]) -> None:
        """Insert households (dicts of column values), in this organization."""
        await insert_many(
            self._session, _HOUSEHOLDS, [{**r, "organization_id": self._org} for r in rows]
        )

    # --- guests ----------------------------------------------------------------------------

    def _guests(self, event_id: uuid.UUID) -> Any:
        return (
            select(EventGuest, Contact.first_name, Contact.last_name, Contact.email, Contact.phone)
            .join(Contact, Contact.id == EventGuest.contact_id)
            .where(EventGuest.organization_id == self._org, EventGuest.event_id == event_id)
        )

    async def guest(self, event_id: uuid.UUID, contact_id: uuid.UUID) -> GuestRow | None:
        """The contact's guest row in the event, with its contact fields, or ``None``."""
        result = await self._session.execute(
            self._guests(event_id).where(EventGuest.contact_id == contact_id)
        )
        row = result.first()
        return None if row is None else GuestRow(*row)

    async def guests(
        self,
        event_id: uuid.UUID,
        *,
        after: uuid.UUID | None,
        limit: int,
        role: str | None = None,
        rsvp: str | None = None,
    ) -> Sequence[GuestRow]:
        """Up to ``limit`` guests of the event ordered by contact id, after the contact
        ``after``, optionally only those of one role or RSVP status."""
        stmt = self._guests(event_id)
        if after is not None:
            stmt = stmt.where(EventGuest.contact_id > after)
        if role is not None:
            stmt = stmt.where(EventGuest.role == role)
        if rsvp is not None:
            stmt = stmt.where(EventGuest.rsvp == rsvp)
        result = await self._session.execute(stmt.order_by(EventGuest.contact_id).limit(limit))
        return [GuestRow(*row) for row in result]

    async def guest_rows(
        self, event_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """The event's guest rows (column values) of ``contact_ids``, keyed by contact id."""
        table = _GUESTS
        found: dict[uuid.UUID, dict[str, Any]] = {}
        async with planned_for_values(self._session):
            for chunk in _chunks(contact_ids):
                rows = await self._session.execute(
                    select(table).where(
                        table.c.organization_id == self._org,
                        table.c.event_id == event_id,
                        table.c.contact_id.in_(chunk),
                    )
                )
                found.update({row.contact_id: row._asdict() for row in rows})
        return found

    async def upsert_guests(self, rows: list[dict[str, Any]]) -> None:
        """Write guest rows (every column): new ones are inserted, and a contact already in
        the event gets the row's mutable columns. All rows must belong to this organization."""
        for row in rows:
            row["organization_id"] = self._org
        await upsert(
            self._session,
            _GUESTS,
            rows,
            conflict=("event_id", "contact_id"),
            update=(*GUEST_MUTABLE, "attributes", "updated_at"),
        )
