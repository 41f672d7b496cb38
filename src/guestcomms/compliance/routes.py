"""Compliance endpoints: consents, suppressions and the organization's sender identity (API
key), and the guest-facing unsubscribe routes ``/u/{token}`` (no key: the signed token is the
credential; a token that does not verify is a 404)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import HTMLResponse

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.compliance import preferences
from guestcomms.compliance.models import Consent, Suppression
from guestcomms.compliance.records import ConsentRepository, SuppressionListRepository
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.compliance.schemas import (
    ComplianceSettings,
    ComplianceSettingsUpdate,
    ConsentCreate,
    ConsentHistory,
    ConsentOut,
    SuppressionChannel,
    SuppressionCreate,
    SuppressionOut,
    SuppressionPage,
)
from guestcomms.compliance.unsubscribe import ONE_CLICK_BODY, UnsubscribeLinks
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import NotFoundError
from guestcomms.organizations.models import Organization

router = APIRouter(tags=["compliance"])
unsubscribe_router = APIRouter(include_in_schema=False)
# the page loads nothing and its forms post only back to itself
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}
_SETTINGS_FIELDS = (
    "sender_name",
    "physical_address",
    "sms_help_text",
    "quiet_hours",
    "frequency_caps",
    "tracking",
)


def _consent_out(row: Consent) -> ConsentOut:
    return ConsentOut(
        id=to_public(IdKind.CONSENT, row.id),
        contact_id=to_public(IdKind.CONTACT, row.contact_id),
        channel=row.channel,
        purpose=row.purpose,
        granted=row.granted,
        version=row.version,
        source=row.source,
        proof=row.proof,
        created_at=row.created_at,
    )


def _suppression_out(row: Suppression) -> SuppressionOut:
    return SuppressionOut(
        id=to_public(IdKind.SUPPRESSION, row.id),
        channel=row.channel,
        address=row.address,
        reason=row.reason,
        source=row.source,
        detail=row.detail,
        created_at=row.created_at,
    )


@router.post(
    "/v1/contacts/{contact_id}/consents",
    status_code=status.HTTP_201_CREATED,
    summary="Record a consent version",
)
async def create_consent(
    contact_id: str, body: ConsentCreate, session: SessionDep, caller: CallerDep
) -> ConsentOut:
    """Append the next version of the contact's consent for a channel and purpose; the newest
    version wins (see the compliance gate). Earlier versions are kept as history."""
    caller.require("contacts:write")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    async with session.begin():
        repo = ConsentRepository(session, caller.organization_id)
        if await repo.contact(key) is None:
            raise NotFoundError("contact not found")
        consent = await repo.record(contact_id=key, **body.model_dump())
        return _consent_out(consent)


@router.get("/v1/contacts/{contact_id}/consents", summary="A contact's consent history")
async def list_consents(contact_id: str, session: SessionDep, caller: CallerDep) -> ConsentHistory:
    """Every consent version of the contact."""
    caller.require("contacts:read")
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    async with session.begin():
        repo = ConsentRepository(session, caller.organization_id)
        if await repo.contact(key) is None:
            raise NotFoundError("contact not found")
        return ConsentHistory(items=[_consent_out(c) for c in await repo.history(key)])


@router.get("/v1/suppressions", summary="List suppressions")
async def list_suppressions(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[
        str | None, Query(description="cursor: the last id of the previous page")
    ] = None,
    channel: SuppressionChannel | None = None,
) -> SuppressionPage:
    """Suppressed addresses in creation order, a page at a time."""
    caller.require("contacts:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.SUPPRESSION, after, field="after") if after else None
    async with session.begin():
        repo = SuppressionListRepository(session, caller.organization_id)
        rows = await repo.page(after=cursor, limit=size + 1, channel=channel)
    items, next_cursor = split_page(rows, size=size, kind=IdKind.SUPPRESSION)
    return SuppressionPage(items=[_suppression_out(s) for s in items], next_cursor=next_cursor)


@router.post("/v1/suppressions", status_code=status.HTTP_201_CREATED, summary="Suppress an address")
async def create_suppression(
    body: SuppressionCreate, session: SessionDep, caller: CallerDep
) -> SuppressionOut:
    """Suppress an address on a channel (reason ``manual`` unless given). Adding one that
    exists returns the existing row."""
    caller.require("contacts:write")
    address = body.address.strip()
    async with session.begin():
        await SuppressionRepository(session, caller.organization_id).suppress(
            channel=body.channel,
            address=address,
            reason=body.reason,
            source="api",
            detail={"note": body.note} if body.note else None,
        )
        normal = address.lower() if body.channel == "email" else address
        row = await SuppressionListRepository(session, caller.organization_id).find(
            body.channel, normal
        )
        if row is None:  # pragma: no cover - just inserted or already there
            raise NotFoundError("suppression not found")
        return _suppression_out(row)


@router.delete(
    "/v1/suppressions/{suppression_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a suppression",
)
async def delete_suppression(
    suppression_id: str, session: SessionDep, caller: CallerDep
) -> Response:
    """Lift a suppression: the address may be sent to again (for marketing, only if its
    consent allows)."""
    caller.require("contacts:write")
    key = path_id(IdKind.SUPPRESSION, suppression_id, what="suppression")
    async with session.begin():
        if not await SuppressionListRepository(session, caller.organization_id).remove(key):
            raise NotFoundError("suppression not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _organization(session: SessionDep, organization_id: uuid.UUID) -> Organization:
    organization = await session.get(Organization, organization_id)
    if organization is None:  # pragma: no cover - the caller's key belongs to it
        raise NotFoundError("organization not found")
    return organization


def _settings_out(organization: Organization) -> ComplianceSettings:
    settings = organization.settings or {}
    values = {name: settings.get(name) for name in _SETTINGS_FIELDS}
    values["tracking"] = settings.get("tracking") is not False  # unset: on
    return ComplianceSettings(**values)


@router.get("/v1/organization/settings", summary="The organization's compliance settings")
async def get_organization_settings(session: SessionDep, caller: CallerDep) -> ComplianceSettings:
    """The sender identity (name and physical address) marketing emails carry."""
    caller.require("admin")
    async with session.begin():
        return _settings_out(await _organization(session, caller.organization_id))


@router.patch("/v1/organization/settings", summary="Change the organization's compliance settings")
async def update_organization_settings(
    body: ComplianceSettingsUpdate, session: SessionDep, caller: CallerDep
) -> ComplianceSettings:
    """Set the sender identity; marketing emails are blocked until both fields are set."""
    caller.require("admin")
    changes = body.model_dump(exclude_unset=True)
    async with session.begin():
        organization = await _organization(session, caller.organization_id)
        settings = dict(organization.settings or {})
        for name, value in changes.items():
            if value is None or not str(value).strip():
                settings.pop(name, None)
            else:  # the text fields stripped; the others (objects, tracking's bool) as given
                settings[name] = value.strip() if isinstance(value, str) else value
        organization.settings = settings  # a new dict, so the JSON column is written
        return _settings_out(organization)


def _links(runtime: RuntimeDep) -> UnsubscribeLinks:
    return UnsubscribeLinks.from_settings(runtime.settings)


@unsubscribe_router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    """The hosted preference page of the guest a token was made for."""
    claim = _links(runtime).verify(token)
    if claim is None:
        raise NotFoundError("unknown unsubscribe link")
    async with session.begin():
        page = await preferences.render_page(session, claim)
    return HTMLResponse(page, headers=_PAGE_HEADERS)


@unsubscribe_router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_submit(
    token: str, request: Request, session: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """RFC 8058 one-click (body ``List-Unsubscribe=One-Click``): suppress the address on the
    token's channel at once and answer 200. A preference-page form: record its choices."""
    claim = _links(runtime).verify(token)
    if claim is None:
        raise NotFoundError("unknown unsubscribe link")
    body = await request.body()
    fields = parse_qs(body.decode(errors="replace"))
    async with session.begin():
        if _is_one_click(body) and "action" not in fields:
            await preferences.unsubscribe(session, claim, source="one-click")
            return HTMLResponse("You are unsubscribed.", headers=_PAGE_HEADERS)
        page = await preferences.save(session, claim, fields)
    return HTMLResponse(page, headers=_PAGE_HEADERS)


def _is_one_click(body: bytes) -> bool:
    """An RFC 8058 one-click body, form-urlencoded or multipart/form-data (both are sent)."""
    multipart = b'name="List-Unsubscribe"' in body and b"One-Click" in body
    return ONE_CLICK_BODY.encode() in body or multipart
