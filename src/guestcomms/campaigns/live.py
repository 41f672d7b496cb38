"""``GET /v1/campaigns/{campaign_id}/live``: a campaign's live counters over Server-Sent Events.

Every second the stream reads the campaign and its deliveries by status (three small queries
on a fresh session, so no connection is held in between) and sends a ``progress`` event. It
ends with a ``done`` event once the campaign is finished (completed, cancelled or failed) and
none of its deliveries is queued, being sent or waiting for a retry; deliveries scheduled for
later (a future send time, quiet hours) do not keep it open. A campaign deleted meanwhile
ends it with a ``deleted`` event.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import path_id
from guestcomms.campaigns.models import CampaignStatus
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.campaigns.service import campaign_out
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.ids import IdKind
from guestcomms.errors import NotFoundError

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

POLL_SECONDS = 1.0  # how often the stream reads the counts and sends them
FINISHED = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED})
#: deliveries still on their way out: while any is in one of these, the stream stays open
IN_FLIGHT = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.RETRYING)


async def snapshot(
    sessions: async_sessionmaker[AsyncSession], organization_id: uuid.UUID, key: uuid.UUID
) -> dict[str, Any] | None:
    """The campaign's progress and its deliveries by status, or None once it is deleted.
    ``in_flight`` counts the deliveries still on their way out; ``done`` says the stream ends."""
    async with sessions() as session:
        repo = CampaignRepository(session, organization_id)
        campaign = await repo.get(key)
        if campaign is None:
            return None
        message = await repo.message_of(key)
        counts = await repo.status_counts(message.id) if message else {}
    view = campaign_out(campaign, message=message, counts=counts)
    in_flight = sum(counts.get(s.value, 0) for s in IN_FLIGHT)
    return {
        "id": view.id,
        "status": view.status,
        "total": view.total,
        "processed": view.processed,
        "created": view.created,
        "progress": view.progress,
        "counts": dict(sorted(counts.items())),
        "in_flight": in_flight,
        "error": view.error,
        "done": campaign.status in FINISHED and in_flight == 0,
    }


def _event(name: str, number: int, data: object) -> str:
    return f"event: {name}\nid: {number}\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/{campaign_id}/live",
    summary="A campaign's live counters (Server-Sent Events)",
    response_class=StreamingResponse,
)
async def campaign_live(
    campaign_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> StreamingResponse:
    """`text/event-stream`: a `progress` event at once and then every second (status,
    guests fanned out of the total, deliveries written, progress, deliveries by status,
    how many are still on their way out), ending with a `done` event carrying the final
    counts once the campaign is finished and nothing of it is queued, sending or retrying."""
    caller.require("messages:read")
    key = path_id(IdKind.CAMPAIGN, campaign_id, what="campaign")
    if await CampaignRepository(session, caller.organization_id).get(key) is None:
        raise NotFoundError("campaign not found")
    await session.close()  # a stream lasts long: hold no connection while it waits
    organization = caller.organization_id

    async def events() -> AsyncIterator[str]:
        number = 0
        while True:
            number += 1
            current = await snapshot(runtime.sessions, organization, key)
            if current is None:
                yield _event("deleted", number, {"id": campaign_id})
                return
            if current["done"]:
                yield _event("done", number, current)
                return
            yield _event("progress", number, current)
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
