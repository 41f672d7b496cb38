"""Event logic: events, their households, and their guests and vendors (RSVP included).

Services never commit: the caller (the request, the CLI command) owns the transaction. A
change to a guest's RSVP or attributes rechecks the guest's scheduled reminders in the same
transaction, so a guest who answers "yes" gets none of the remaining "please RSVP" ones.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from guestcomms.campaigns.reminders import recheck_reminders
from guestcomms.contacts.repository import ContactRepository
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import GuestRole, Rsvp
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.domain.schedule import local_to_utc
from guestcomms.errors import ConflictError, NotFoundError, ValidationFailedError
from guestcomms.events.models import Event, EventGuest, Household
from guestcomms.events.repository import EventRepository, GuestRow
from guestcomms.events.schemas import (
    EventCreate,
    EventOut,
    EventUpdate,
    GuestContact,
    GuestCreate,
    GuestOut,
    GuestUpdate,
    HouseholdCreate,
    HouseholdOut,
    HouseholdUpdate,
)

_REQUIRED_EVENT_FIELDS = ("name", "date", "timezone", "outdoor")


def _local_to_utc(day: date, at: time | None, zone: str) -> datetime:
    """The event's start as a UTC instant: midnight when it has no time; a time in a DST gap
    or overlap follows the scheduling rule of ``domain.schedule``."""
    return local_to_utc(day, at or time(0), ZoneInfo(zone))


def event_out(event: Event) -> EventOut:
    """The API view of an event."""
    return EventOut(
        id=to_public(IdKind.EVENT, event.id),
        name=event.name,
        date=event.date.isoformat(),
        start_time=event.start_time.strftime("%H:%M") if event.start_time else None,
        timezone=event.timezone,
        starts_at=event.starts_at,
        venue=event.venue,
        outdoor=event.outdoor,
        location=event.location,
        attributes=event.attributes or {},
        created_at=event.created_at,
        updated_at=event.updated_at,
    )


def household_out(household: Household) -> HouseholdOut:
    """The API view of a household."""
    return HouseholdOut(
        id=to_public(IdKind.HOUSEHOLD, household.id),
        event_id=to_public(IdKind.EVENT, household.event_id),
        name=household.name,
        address=household.address,
        created_at=household.created_at,
    )


def guest_out(row: GuestRow) -> GuestOut:
    """The API view of a guest, with who the contact is."""
    guest = row.guest
    return GuestOut(
        contact=GuestContact(
            id=to_public(IdKind.CONTACT, guest.contact_id),
            first_name=row.first_name,
            last_name=row.last_name,
            email=row.email,
            phone=row.phone,
        ),
        event_id=to_public(IdKind.EVENT, guest.event_id),
        role=GuestRole(guest.role),
        household_id=to_public(IdKind.HOUSEHOLD, guest.household_id)
        if guest.household_id
        else None,
        rsvp=Rsvp(guest.rsvp),
        rsvp_at=guest.rsvp_at,
        side=guest.side,
        table=guest.table_name,
        dietary=guest.dietary,
        attributes=guest.attributes or {},
        created_at=guest.created_at,
        updated_at=guest.updated_at,
    )


class EventService:
    """Event, household and guest use cases for one organization."""

    def __init__(self, repo: EventRepository, contacts: ContactRepository) -> None:
        self._repo = repo
        self._contacts = contacts

    # --- events ----------------------------------------------------------------------------

    async def get(self, event_id: uuid.UUID) -> Event:
        """The event; ``NotFoundError`` if it is not this organization's."""
        event = await self._repo.get(event_id)
        if event is None:
            raise NotFoundError("event not found")
        return event

    async def create(self, data: EventCreate) -> Event:
        """Create an event; its UTC ``starts_at`` comes from date, time and zone."""
        event = Event(
            name=data.name,
            date=data.date,
            start_time=data.start_time,
            timezone=data.timezone,
            starts_at=_local_to_utc(data.date, data.start_time, data.timezone),
            venue=data.venue,
            outdoor=bool(data.outdoor),
            location=data.location.model_dump(exclude_none=True) if data.location else None,
            attributes=data.attributes or {},
        )
        self._repo.add(event)
        await self._repo.flush()
        return event

    async def update(self, event_id: uuid.UUID, data: EventUpdate) -> Event:
        """Apply the fields present in ``data``; a required field cannot be cleared (422)."""
        event = await self.get(event_id)
        changes = data.model_dump(exclude_unset=True)
        for name in _REQUIRED_EVENT_FIELDS:
            if name in changes and changes[name] is None:
                raise ValidationFailedError(f"{name} cannot be null", field=name)
        if "location" in changes and data.location is not None:
            changes["location"] = data.location.model_dump(exclude_none=True)
        if "attributes" in changes and changes["attributes"] is None:
            changes["attributes"] = {}
        for key, value in changes.items():
            setattr(event, key, value)
        event.starts_at = _local_to_utc(event.date, event.start_time, event.timezone)
        await self._repo.flush()
        return event

    async def delete(self, event_id: uuid.UUID) -> None:
        """Delete the event with its households and guests; messages keep their history."""
        await self._repo.delete(await self.get(event_id))

    # --- households ------------------------------------------------------------------------

    async def household(self, event_id: uuid.UUID, household_id: uuid.UUID) -> Household:
        """The household of this organization's event; ``NotFoundError`` otherwise."""
        await self.get(event_id)
        household = await self._repo.household(event_id, household_id)
        if household is None:
            raise NotFoundError("household not found")
        return household

    async def create_household(self, event_id: uuid.UUID, data: HouseholdCreate) -> Household:
        """Create a household in the event."""
        await self.get(event_id)
        household = Household(event_id=event_id, name=data.name, address=data.address)
        self._repo.add(household)
        await self._repo.flush()
        return household

    async def update_household(
        self, event_id: uuid.UUID, household_id: uuid.UUID, data: HouseholdUpdate
    ) -> Household:
        """Apply the fields present in ``data``; the name cannot be cleared."""
        household = await self.household(event_id, household_id)
        changes = data.model_dump(exclude_unset=True)
        if "name" in changes and changes["name"] is None:
            raise ValidationFailedError("name cannot be null", field="name")
        for key, value in changes.items():
            setattr(household, key, value)
        await self._repo.flush()
        return household

    async def delete_household(self, event_id: uuid.UUID, household_id: uuid.UUID) -> None:
        """Delete the household; its guests stay in the event, in no household."""
        await self._repo.delete(await self.household(event_id, household_id))

    # --- guests ----------------------------------------------------------------------------

    async def guest(self, event_id: uuid.UUID, contact_id: uuid.UUID) -> GuestRow:
        """The contact's part in the event; ``NotFoundError`` if the event is not this
        organization's or the contact is not in it."""
        await self.get(event_id)
        row = await self._repo.guest(event_id, contact_id)
        if row is None:
            raise NotFoundError("guest not found in this event")
        return row

    async def _household_key(self, event_id: uuid.UUID, public_id: str | None) -> uuid.UUID | None:
        if public_id is None:
            return None
        try:
            key = from_public(IdKind.HOUSEHOLD, public_id)
        except InvalidIdError as e:
            raise ValidationFailedError(str(e), field="household_id") from e
        if await self._repo.household(event_id, key) is None:
            raise ValidationFailedError(
                f"no household {public_id} in this event", field="household_id"
            )
        return key

    async def add_guest(self, event_id: uuid.UUID, data: GuestCreate) -> GuestRow:
        """Add an existing contact to the event; 422 for an unknown contact or household,
        ``ConflictError`` if the contact is already in the event."""
        await self.get(event_id)
        try:
            contact_id = from_public(IdKind.CONTACT, data.contact_id)
        except InvalidIdError as e:
            raise ValidationFailedError(str(e), field="contact_id") from e
        if await self._contacts.get(contact_id) is None:
            raise ValidationFailedError(f"no contact {data.contact_id}", field="contact_id")
        if await self._repo.guest(event_id, contact_id) is not None:
            raise ConflictError(
                f"contact {data.contact_id} is already in this event", field="contact_id"
            )
        rsvp = data.rsvp or Rsvp.PENDING
        guest = EventGuest(
            event_id=event_id,
            contact_id=contact_id,
            role=data.role or "guest",
            household_id=await self._household_key(event_id, data.household_id),
            rsvp=rsvp,
            rsvp_at=None if rsvp == Rsvp.PENDING else utc_now(),
            side=data.side,
            table_name=data.table,
            dietary=data.dietary,
            attributes=data.attributes or {},
        )
        self._repo.add(guest)
        await self._repo.flush()
        return await self.guest(event_id, contact_id)

    async def update_guest(
        self, event_id: uuid.UUID, contact_id: uuid.UUID, data: GuestUpdate
    ) -> GuestRow:
        """Apply the fields present in ``data``. A new RSVP stamps ``rsvp_at``; a change of
        RSVP or attributes rechecks the guest's scheduled reminders."""
        guest = (await self.guest(event_id, contact_id)).guest
        changes: dict[str, Any] = data.model_dump(exclude_unset=True)
        for name in ("role", "rsvp"):
            if name in changes and changes[name] is None:
                raise ValidationFailedError(f"{name} cannot be null", field=name)
        if "household_id" in changes:
            changes["household_id"] = await self._household_key(event_id, data.household_id)
        if "table" in changes:
            changes["table_name"] = changes.pop("table")
        if "attributes" in changes and changes["attributes"] is None:
            changes["attributes"] = {}
        recheck = changes.get("attributes", guest.attributes) != guest.attributes
        if "rsvp" in changes:
            recheck |= self._set_rsvp(guest, changes.pop("rsvp"))
        for key, value in changes.items():
            setattr(guest, key, value)
        await self._repo.flush()
        if recheck:
            await self._recheck(contact_id)
        return await self.guest(event_id, contact_id)

    async def record_rsvp(self, event_id: uuid.UUID, contact_id: uuid.UUID, rsvp: Rsvp) -> GuestRow:
        """Record the guest's answer now (``rsvp_at``), and recheck their reminders."""
        guest = (await self.guest(event_id, contact_id)).guest
        guest.rsvp = rsvp
        # an answer given again is still an answer given now
        guest.rsvp_at = None if rsvp == Rsvp.PENDING else utc_now()
        await self._repo.flush()
        await self._recheck(contact_id)
        return await self.guest(event_id, contact_id)

    async def remove_guest(self, event_id: uuid.UUID, contact_id: uuid.UUID) -> None:
        """Take the contact out of the event (the contact stays); its reminders are rechecked,
        as a campaign's condition over this event no longer holds for it."""
        guest = (await self.guest(event_id, contact_id)).guest
        await self._repo.delete(guest)
        await self._recheck(contact_id)

    @staticmethod
    def _set_rsvp(guest: EventGuest, rsvp: str) -> bool:
        """Set the RSVP; stamp ``rsvp_at`` when it changed. True if it changed."""
        if rsvp == guest.rsvp:
            return False
        guest.rsvp = rsvp
        guest.rsvp_at = None if rsvp == Rsvp.PENDING else utc_now()
        return True

    async def _recheck(self, contact_id: uuid.UUID) -> None:
        await recheck_reminders(
            self._repo.session, organization_id=self._repo.organization_id, contact_ids=[contact_id]
        )
