"""Privacy endpoints of a contact (thin: parse, call the service in one transaction)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from guestcomms.api.deps import Caller, CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import path_id
from guestcomms.compliance.models import PrivacyRequest
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.privacy.export import to_json, to_zip
from guestcomms.privacy.repository import PrivacyRepository
from guestcomms.privacy.schemas import PrivacyRequestOut
from guestcomms.privacy.service import erase_contact, export_contact

router = APIRouter(prefix="/v1/contacts", tags=["privacy"])


def _actor(caller: Caller) -> str:
    return f"key:{caller.key_prefix}"


def request_out(request: PrivacyRequest) -> PrivacyRequestOut:
    """The API view of a privacy request."""
    return PrivacyRequestOut(
        id=str(request.id),
        kind=request.kind,
        status=request.status,
        contact_id=to_public(IdKind.CONTACT, request.contact_id) if request.contact_id else None,
        actor=request.actor,
        detail=request.detail or {},
        created_at=request.created_at,
        completed_at=request.completed_at,
    )


@router.get(
    "/{contact_id}/export",
    summary="Export everything held about a contact",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "application/zip": {}}}},
)
async def export_contact_data(
    contact_id: str,
    session: SessionDep,
    caller: CallerDep,
    export_format: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """The contact, their event guest records, deliveries and their events, consents,
    suppressions of their addresses, inbox items and privacy requests. `format=json` (one
    document) or `format=csv` (a zip of one CSV per section, cells neutralised against
    formula injection). The export is recorded as a privacy request."""
    caller.require("contacts:read")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    async with session.begin():
        repo = PrivacyRepository(session, caller.organization_id)
        sections = await export_contact(repo, key, actor=_actor(caller), fmt=export_format)
    if export_format == "csv":
        return Response(
            to_zip(sections),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{contact_id}.zip"'},
        )
    return Response(to_json(sections), media_type="application/json")


@router.post("/{contact_id}/erase", summary="Erase a contact's personal data")
async def erase_contact_data(
    contact_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> PrivacyRequestOut:
    """In one transaction: the contact's suppressions kept by keyed hash only (a re-import of
    the address stays suppressed), their personal data deleted or nulled in every table, the
    contact row left as an empty tombstone so their deliveries remain as anonymous history.
    Returns the recorded request."""
    caller.require("contacts:write")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    async with session.begin():
        repo = PrivacyRepository(session, caller.organization_id)
        request = await erase_contact(repo, key, actor=_actor(caller))
        return request_out(request)
