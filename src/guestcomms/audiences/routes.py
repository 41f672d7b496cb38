"""Saved-audience endpoints and previews (thin: parse, call the service).

Previews show contacts, so they need ``contacts:read`` as well as ``audiences:read``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from guestcomms.api.deps import Caller, CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.audiences.repository import AudienceRepository
from guestcomms.audiences.schemas import (
    MAX_SAMPLE,
    AudienceCreate,
    AudienceOut,
    AudiencePage,
    AudiencePreview,
    AudienceUpdate,
    PreviewRequest,
)
from guestcomms.audiences.service import AudienceService, audience_out
from guestcomms.domain.ids import IdKind

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])

Sample = Annotated[int, Query(ge=0, le=MAX_SAMPLE, description="contacts to show")]


def _service(session: SessionDep, caller: Caller) -> AudienceService:
    return AudienceService(AudienceRepository(session, caller.organization_id))


@router.post("", status_code=status.HTTP_201_CREATED, summary="Save an audience")
async def create_audience(
    body: AudienceCreate, session: SessionDep, caller: CallerDep
) -> AudienceOut:
    """Save a named filter. A malformed filter is a 422 (`filter-error`) with the position;
    409 if the name is taken."""
    caller.require("audiences:write")
    async with session.begin():
        audience = await _service(session, caller).create(body)
    return audience_out(audience)


@router.get("", summary="List audiences")
async def list_audiences(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> AudiencePage:
    """Saved audiences in creation order, a page at a time."""
    caller.require("audiences:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.AUDIENCE, after, field="after") if after else None
    repo = AudienceRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.page(after=cursor, limit=size + 1), size=size, kind=IdKind.AUDIENCE
    )
    return AudiencePage(items=[audience_out(a) for a in rows], next_cursor=next_cursor)


@router.post("/preview", summary="Preview an unsaved audience")
async def preview_audience(
    body: PreviewRequest, session: SessionDep, caller: CallerDep
) -> AudiencePreview:
    """How many contacts a filter selects now, and the first `sample` of them."""
    caller.require("audiences:read")
    caller.require("contacts:read")
    return await _service(session, caller).preview(
        text=body.filter, event_id=body.event_id, dedupe=body.dedupe_households, sample=body.sample
    )


@router.get("/{audience_id}", summary="Get an audience")
async def get_audience(audience_id: str, session: SessionDep, caller: CallerDep) -> AudienceOut:
    """One audience; 404 if it is not this organization's."""
    caller.require("audiences:read")
    key = path_id(IdKind.AUDIENCE, audience_id, what="audience")
    return audience_out(await _service(session, caller).get(key))


@router.patch("/{audience_id}", summary="Update an audience")
async def update_audience(
    audience_id: str, body: AudienceUpdate, session: SessionDep, caller: CallerDep
) -> AudienceOut:
    """Change the fields given; the result is checked as a whole (422 with the position)."""
    caller.require("audiences:write")
    key = path_id(IdKind.AUDIENCE, audience_id, what="audience")
    async with session.begin():
        audience = await _service(session, caller).update(key, body)
    return audience_out(audience)


@router.delete("/{audience_id}", status_code=204, summary="Delete an audience")
async def delete_audience(audience_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """Delete a saved audience."""
    caller.require("audiences:write")
    key = path_id(IdKind.AUDIENCE, audience_id, what="audience")
    async with session.begin():
        await _service(session, caller).delete(key)
    return Response(status_code=204)


@router.get("/{audience_id}/preview", summary="Preview a saved audience")
async def preview_saved_audience(
    audience_id: str, session: SessionDep, caller: CallerDep, sample: Sample = 10
) -> AudiencePreview:
    """How many contacts the audience selects now, and the first `sample` of them."""
    caller.require("audiences:read")
    caller.require("contacts:read")
    key = path_id(IdKind.AUDIENCE, audience_id, what="audience")
    return await _service(session, caller).preview_saved(key, sample=sample)
