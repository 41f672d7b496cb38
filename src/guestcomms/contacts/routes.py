"""Contact endpoints (thin: parse, call the service inside the request's transaction)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.contacts.repository import ContactRepository
from guestcomms.contacts.schemas import (
    ContactCreate,
    ContactOut,
    ContactPage,
    ContactUpdate,
    ImportReport,
)
from guestcomms.contacts.service import ContactService, parse_csv, to_out
from guestcomms.domain.ids import IdKind
from guestcomms.errors import ValidationFailedError
from guestcomms.security.ssrf import SsrfGuard

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


def _service(session: SessionDep, caller: CallerDep, runtime: RuntimeDep) -> ContactService:
    return ContactService(
        ContactRepository(session, caller.organization_id),
        default_phone_region=runtime.settings.default_phone_region,
        url_guard=SsrfGuard.from_settings(runtime.settings),
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a contact")
async def create_contact(
    body: ContactCreate, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> ContactOut:
    """Create a guest or vendor. 409 if the email is taken."""
    caller.require("contacts:write")
    async with session.begin():
        contact = await _service(session, caller, runtime).create(body)
    return to_out(contact)


@router.get("", summary="List contacts")
async def list_contacts(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[
        str | None, Query(description="cursor: the last id of the previous page")
    ] = None,
) -> ContactPage:
    """Contacts in creation order, a page at a time."""
    caller.require("contacts:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.CONTACT, after, field="after") if after else None
    repo = ContactRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.page(after=cursor, limit=size + 1), size=size, kind=IdKind.CONTACT
    )
    return ContactPage(items=[to_out(c) for c in rows], next_cursor=next_cursor)


@router.post("/import", summary="Import contacts from JSON or CSV")
async def import_contacts(
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    event_id: Annotated[
        str | None,
        Query(description="also add (or update) every contact as a guest of this event"),
    ] = None,
) -> ImportReport:
    """Create or update (by email) many contacts. Send a JSON array of contacts
    (`Content-Type: application/json`) or a CSV file with a header row (`text/csv`).
    With `event_id`, each contact is also added to the event (or updated in it), and rows may
    carry the guest fields `role`, `rsvp`, `side`, `table`, `dietary` and `household` (a
    household name, created in the event when new). Valid rows are kept; each refused row is
    reported with its number, field and reason."""
    caller.require("contacts:write")
    event = body_id(IdKind.EVENT, event_id, field="event_id") if event_id else None
    if event is not None:
        caller.require("events:write")
    rows = _import_rows(
        request.headers.get("content-type", ""), await request.body(), guests=event is not None
    )
    async with session.begin():
        return await _service(session, caller, runtime).import_rows(rows, event_id=event)


def _import_rows(content_type: str, body: bytes, *, guests: bool) -> list[dict[str, Any]]:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValidationFailedError("the body is not UTF-8 text", field="body") from e
    if media in ("text/csv", "application/csv"):
        return parse_csv(text, guest_columns=guests)
    if media != "application/json":
        raise ValidationFailedError(
            "send application/json (an array of contacts) or text/csv", field="content-type"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValidationFailedError(f"invalid JSON: {e}", field="body") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValidationFailedError("expected a JSON array of contact objects", field="body")
    return data


@router.get("/{contact_id}", summary="Get a contact")
async def get_contact(
    contact_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> ContactOut:
    """One contact; 404 if it is not this organization's."""
    caller.require("contacts:read")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    return to_out(await _service(session, caller, runtime).get(key))


@router.patch("/{contact_id}", summary="Update a contact")
async def update_contact(
    contact_id: str,
    body: ContactUpdate,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
) -> ContactOut:
    """Change the fields given; others stay as they are."""
    caller.require("contacts:write")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    async with session.begin():
        contact = await _service(session, caller, runtime).update(key, body)
    return to_out(contact)


@router.delete("/{contact_id}", status_code=204, summary="Delete a contact")
async def delete_contact(
    contact_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> Response:
    """Delete a contact and its deliveries."""
    caller.require("contacts:write")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    async with session.begin():
        await _service(session, caller, runtime).delete(key)
    return Response(status_code=204)
