"""Event, household and guest endpoints (thin: parse, call the service inside the request's
transaction)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.api.deps import Caller, CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.contacts.repository import ContactRepository
from guestcomms.domain.enums import GuestRole, Rsvp
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.events.repository import EventRepository
from guestcomms.events.schemas import (
    EventCreate,
    EventOut,
    EventPage,
    EventUpdate,
    GuestCreate,
    GuestOut,
    GuestPage,
    GuestUpdate,
    HouseholdCreate,
    HouseholdOut,
    HouseholdPage,
    HouseholdUpdate,
    RsvpIn,
)
from guestcomms.events.service import EventService, event_out, guest_out, household_out

router = APIRouter(prefix="/v1/events", tags=["events"])

After = Annotated[str | None, Query(description="cursor: the last id of the previous page")]


def _service(session: AsyncSession, caller: Caller) -> EventService:
    return EventService(
        EventRepository(session, caller.organization_id),
        ContactRepository(session, caller.organization_id),
    )


def _event(event_id: str) -> uuid.UUID:
    return path_id(IdKind.EVENT, event_id, what="event")


def _contact(contact_id: str) -> uuid.UUID:
    return path_id(IdKind.CONTACT, contact_id, what="guest")


def _household(household_id: str) -> uuid.UUID:
    return path_id(IdKind.HOUSEHOLD, household_id, what="household")


# --- events --------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an event")
async def create_event(body: EventCreate, session: SessionDep, caller: CallerDep) -> EventOut:
    """Create a wedding or other occasion. `starts_at` (UTC) is computed from `date`,
    `start_time` (midnight when absent) and `timezone`."""
    caller.require("events:write")
    async with session.begin():
        event = await _service(session, caller).create(body)
    return event_out(event)


@router.get("", summary="List events")
async def list_events(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: After = None,
) -> EventPage:
    """Events in creation order, a page at a time."""
    caller.require("events:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.EVENT, after, field="after") if after else None
    repo = EventRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.page(after=cursor, limit=size + 1), size=size, kind=IdKind.EVENT
    )
    return EventPage(items=[event_out(e) for e in rows], next_cursor=next_cursor)


@router.get("/{event_id}", summary="Get an event")
async def get_event(event_id: str, session: SessionDep, caller: CallerDep) -> EventOut:
    """One event; 404 if it is not this organization's."""
    caller.require("events:read")
    return event_out(await _service(session, caller).get(_event(event_id)))


@router.patch("/{event_id}", summary="Update an event")
async def update_event(
    event_id: str, body: EventUpdate, session: SessionDep, caller: CallerDep
) -> EventOut:
    """Change the fields given; `starts_at` follows date, time and zone."""
    caller.require("events:write")
    key = _event(event_id)
    async with session.begin():
        event = await _service(session, caller).update(key, body)
    return event_out(event)


@router.delete("/{event_id}", status_code=204, summary="Delete an event")
async def delete_event(event_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """Delete an event with its households and guests (the contacts stay)."""
    caller.require("events:write")
    key = _event(event_id)
    async with session.begin():
        await _service(session, caller).delete(key)
    return Response(status_code=204)


# --- households ----------------------------------------------------------------------------


@router.post(
    "/{event_id}/households", status_code=status.HTTP_201_CREATED, summary="Create a household"
)
async def create_household(
    event_id: str, body: HouseholdCreate, session: SessionDep, caller: CallerDep
) -> HouseholdOut:
    """A household: guests of the event who share one address."""
    caller.require("events:write")
    key = _event(event_id)
    async with session.begin():
        household = await _service(session, caller).create_household(key, body)
    return household_out(household)


@router.get("/{event_id}/households", summary="List an event's households")
async def list_households(
    event_id: str,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: After = None,
) -> HouseholdPage:
    """The event's households in creation order, a page at a time."""
    caller.require("events:read")
    key = _event(event_id)
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.HOUSEHOLD, after, field="after") if after else None
    await _service(session, caller).get(key)
    repo = EventRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.households(key, after=cursor, limit=size + 1), size=size, kind=IdKind.HOUSEHOLD
    )
    return HouseholdPage(items=[household_out(h) for h in rows], next_cursor=next_cursor)


@router.get("/{event_id}/households/{household_id}", summary="Get a household")
async def get_household(
    event_id: str, household_id: str, session: SessionDep, caller: CallerDep
) -> HouseholdOut:
    """One household of the event."""
    caller.require("events:read")
    service = _service(session, caller)
    return household_out(await service.household(_event(event_id), _household(household_id)))


@router.patch("/{event_id}/households/{household_id}", summary="Update a household")
async def update_household(
    event_id: str,
    household_id: str,
    body: HouseholdUpdate,
    session: SessionDep,
    caller: CallerDep,
) -> HouseholdOut:
    """Change the household's name or address."""
    caller.require("events:write")
    keys = _event(event_id), _household(household_id)
    async with session.begin():
        household = await _service(session, caller).update_household(*keys, body)
    return household_out(household)


@router.delete(
    "/{event_id}/households/{household_id}", status_code=204, summary="Delete a household"
)
async def delete_household(
    event_id: str, household_id: str, session: SessionDep, caller: CallerDep
) -> Response:
    """Delete the household; its guests stay in the event, in no household."""
    caller.require("events:write")
    keys = _event(event_id), _household(household_id)
    async with session.begin():
        await _service(session, caller).delete_household(*keys)
    return Response(status_code=204)


# --- guests --------------------------------------------------------------------------------


@router.post("/{event_id}/guests", status_code=status.HTTP_201_CREATED, summary="Add a guest")
async def add_guest(
    event_id: str, body: GuestCreate, session: SessionDep, caller: CallerDep
) -> GuestOut:
    """Add an existing contact to the event as a guest or vendor; 409 if already in it."""
    caller.require("events:write")
    key = _event(event_id)
    async with session.begin():
        row = await _service(session, caller).add_guest(key, body)
    return guest_out(row)


@router.get("/{event_id}/guests", summary="List an event's guests")
async def list_guests(
    event_id: str,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[
        str | None, Query(description="cursor: the last contact id of the previous page")
    ] = None,
    role: Annotated[GuestRole | None, Query(description="only guests or only vendors")] = None,
    rsvp: Annotated[Rsvp | None, Query(description="only this RSVP status")] = None,
) -> GuestPage:
    """The event's guests and vendors ordered by contact id, each with the contact's name,
    email and phone."""
    caller.require("events:read")
    key = _event(event_id)
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.CONTACT, after, field="after") if after else None
    await _service(session, caller).get(key)
    rows = await EventRepository(session, caller.organization_id).guests(
        key, after=cursor, limit=size + 1, role=role, rsvp=rsvp
    )
    next_cursor = (
        to_public(IdKind.CONTACT, rows[size - 1].guest.contact_id) if len(rows) > size else None
    )
    return GuestPage(items=[guest_out(r) for r in rows[:size]], next_cursor=next_cursor)


@router.get("/{event_id}/guests/{contact_id}", summary="Get a guest")
async def get_guest(
    event_id: str, contact_id: str, session: SessionDep, caller: CallerDep
) -> GuestOut:
    """The contact's part in the event; 404 if it is not in it."""
    caller.require("events:read")
    return guest_out(await _service(session, caller).guest(_event(event_id), _contact(contact_id)))


@router.patch("/{event_id}/guests/{contact_id}", summary="Update a guest")
async def update_guest(
    event_id: str, contact_id: str, body: GuestUpdate, session: SessionDep, caller: CallerDep
) -> GuestOut:
    """Change the fields given. A changed RSVP or attributes cancels the guest's scheduled
    reminders whose condition no longer holds."""
    caller.require("events:write")
    keys = _event(event_id), _contact(contact_id)
    async with session.begin():
        row = await _service(session, caller).update_guest(*keys, body)
    return guest_out(row)


@router.delete("/{event_id}/guests/{contact_id}", status_code=204, summary="Remove a guest")
async def remove_guest(
    event_id: str, contact_id: str, session: SessionDep, caller: CallerDep
) -> Response:
    """Take the contact out of the event; the contact itself stays."""
    caller.require("events:write")
    keys = _event(event_id), _contact(contact_id)
    async with session.begin():
        await _service(session, caller).remove_guest(*keys)
    return Response(status_code=204)


@router.post("/{event_id}/guests/{contact_id}/rsvp", summary="Record a guest's RSVP")
async def record_rsvp(
    event_id: str, contact_id: str, body: RsvpIn, session: SessionDep, caller: CallerDep
) -> GuestOut:
    """Record the guest's answer and when it was given (`rsvp_at`). Scheduled reminders
    whose condition no longer holds (e.g. "RSVP still pending") are cancelled."""
    caller.require("events:write")
    keys = _event(event_id), _contact(contact_id)
    async with session.begin():
        row = await _service(session, caller).record_rsvp(*keys, body.rsvp)
    return guest_out(row)
