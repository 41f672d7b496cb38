"""Campaign endpoints (create, list, read with progress, edit, delete, preview, start, pause,
resume, cancel) and cancelling deliveries by their cancellation key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.api.deps import Caller, CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.campaigns import experiment
from guestcomms.campaigns.reminders import cancel_by_key
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.campaigns.schemas import (
    CampaignControl,
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignPreview,
    CampaignSummary,
    CampaignUpdate,
    CancelByKey,
    CancelByKeyResult,
    ExperimentResult,
)
from guestcomms.campaigns.service import CampaignService
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import NotFoundError
from guestcomms.templates.repository import TemplateRepository

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
deliveries_router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

MAX_SAMPLE = 100


def _service(session: AsyncSession, caller: Caller) -> CampaignService:
    org = caller.organization_id
    return CampaignService(CampaignRepository(session, org), TemplateRepository(session, org))


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a campaign")
async def create_campaign(
    body: CampaignCreate, session: SessionDep, caller: CallerDep
) -> CampaignOut:
    """A draft: validated now (template and variables, channels, filter, schedule), sent
    nothing until started."""
    caller.require("messages:send")
    service = _service(session, caller)
    async with session.begin():
        campaign = await service.create(body)
        return await service.view(campaign)


@router.get("", summary="List campaigns")
async def list_campaigns(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> CampaignPage:
    """Campaigns, oldest first."""
    caller.require("messages:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.CAMPAIGN, after, field="after") if after else None
    repo = CampaignRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.page(after=cursor, limit=size + 1), size=size, kind=IdKind.CAMPAIGN
    )
    items = [
        CampaignSummary(
            id=to_public(IdKind.CAMPAIGN, c.id),
            name=c.name,
            status=c.status,
            total=c.total,
            processed=c.processed,
            created=c.created,
            created_at=c.created_at,
        )
        for c in rows
    ]
    return CampaignPage(items=items, next_cursor=next_cursor)


@router.get("/{campaign_id}", summary="Get a campaign with its progress")
async def get_campaign(campaign_id: str, session: SessionDep, caller: CallerDep) -> CampaignOut:
    """Status, guests fanned out of the total, deliveries written, and deliveries by status."""
    caller.require("messages:read")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    service = _service(session, caller)
    return await service.view(await service.get(key))


@router.get("/{campaign_id}/experiment", summary="A campaign's experiment results")
async def get_experiment(
    campaign_id: str, session: SessionDep, caller: CallerDep
) -> ExperimentResult:
    """Each arm's sends, successes (unique human opens or clicks), rate with its interval and
    probability of being best, and the sequential test's decision with its reason; 404 for a
    campaign without an experiment."""
    caller.require("messages:read")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    campaign = await _service(session, caller).get(key)
    if not campaign.experiment:
        raise NotFoundError("the campaign runs no experiment")
    return await experiment.results(session, campaign)


@router.patch("/{campaign_id}", summary="Edit a campaign")
async def update_campaign(
    campaign_id: str, body: CampaignUpdate, session: SessionDep, caller: CallerDep
) -> CampaignOut:
    """Allowed until a worker claims its first delivery (409 after): unclaimed deliveries are
    deleted and the campaign is fanned out again."""
    caller.require("messages:send")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    service = _service(session, caller)
    async with session.begin():
        campaign = await service.update(key, body)
        return await service.view(campaign)


@router.delete(
    "/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a campaign"
)
async def delete_campaign(campaign_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """Delete it with its unclaimed deliveries; 409 once a delivery has been claimed (cancel
    it instead, which keeps the history)."""
    caller.require("messages:send")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    async with session.begin():
        await _service(session, caller).delete(key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{campaign_id}/preview", summary="Preview a campaign")
async def preview_campaign(
    campaign_id: str,
    session: SessionDep,
    caller: CallerDep,
    sample: Annotated[int, Query(ge=0, le=MAX_SAMPLE, description="guests to show")] = 10,
) -> CampaignPreview:
    """How many guests it reaches now, a sample of them, and the first send times per zone."""
    caller.require("messages:read")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    return await _service(session, caller).preview(key, sample_size=sample)


@router.post(
    "/{campaign_id}/start", status_code=status.HTTP_202_ACCEPTED, summary="Start a campaign"
)
async def start_campaign(campaign_id: str, session: SessionDep, caller: CallerDep) -> CampaignOut:
    """Count the audience and hand the campaign to the fan-out runner of the workers; follow
    its progress at `GET /v1/campaigns/{id}`. 409 unless it is a draft."""
    caller.require("messages:send")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    service = _service(session, caller)
    async with session.begin():
        campaign = await service.start(key)
        return await service.view(campaign)


@router.post("/{campaign_id}/pause", summary="Pause a campaign")
async def pause_campaign(
    campaign_id: str, session: SessionDep, caller: CallerDep
) -> CampaignControl:
    """Stop the fan-out after its current batch and hold every delivery not yet claimed."""
    caller.require("messages:send")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    async with session.begin():
        return await _service(session, caller).pause(key)


@router.post("/{campaign_id}/resume", summary="Resume a paused campaign")
async def resume_campaign(
    campaign_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> CampaignControl:
    """Release the held deliveries and let the fan-out go on where it stopped."""
    caller.require("messages:send")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    async with session.begin():
        result = await _service(session, caller).resume(key)
    runtime.wake_workers()
    return result


@router.post("/{campaign_id}/cancel", summary="Cancel a campaign")
async def cancel_campaign(
    campaign_id: str, session: SessionDep, caller: CallerDep
) -> CampaignControl:
    """Stop the fan-out and cancel every delivery not yet claimed, in one transaction: none
    is handed to a provider after this answers. `not_changed` counts those a worker had
    already claimed (they may still be sent) or finished."""
    caller.require("messages:send")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    async with session.begin():
        return await _service(session, caller).cancel(key)


@deliveries_router.post("/cancel", summary="Cancel deliveries by cancellation key")
async def cancel_deliveries_by_key(
    body: CancelByKey, session: SessionDep, caller: CallerDep
) -> CancelByKeyResult:
    """Cancel every delivery of the caller's organization that carries this key and that no
    worker has claimed (a campaign's per-guest key is `cmp_<campaign hex>:<contact hex>`)."""
    caller.require("messages:send")
    async with session.begin():
        cancelled = await cancel_by_key(
            session, organization_id=caller.organization_id, key=body.cancellation_key
        )
    return CancelByKeyResult(cancellation_key=body.cancellation_key, cancelled=cancelled)
