"""Delivery endpoints: read one, list by status (the dead-letter view), replay a dead one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.db.notify import notify_workers
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.ids import IdKind
from guestcomms.errors import NotFoundError
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.schemas import DeliveryOut, DeliveryPage
from guestcomms.messages.service import replay_dead
from guestcomms.messages.views import delivery_view

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])


@router.get("", summary="List deliveries (e.g. the dead letters)")
async def list_deliveries(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    status: Annotated[DeliveryStatus | None, Query(description="only this status")] = None,
    limit: Limit = None,
    after: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> DeliveryPage:
    """Deliveries in creation order; `?status=dead` lists those whose retries ran out."""
    caller.require("messages:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.DELIVERY, after, field="after") if after else None
    repo = MessageRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.deliveries_by_status(
            status.value if status else None, after=cursor, limit=size + 1
        ),
        size=size,
        kind=IdKind.DELIVERY,
    )
    events = await repo.events_for([d.id for d in rows])
    return DeliveryPage(
        items=[delivery_view(d, events.get(d.id, [])) for d in rows], next_cursor=next_cursor
    )


@router.get("/{delivery_id}", summary="Get a delivery with its history")
async def get_delivery(delivery_id: str, session: SessionDep, caller: CallerDep) -> DeliveryOut:
    """One delivery and its events."""
    caller.require("messages:read")
    key = path_id(IdKind.DELIVERY, delivery_id, what="delivery")
    repo = MessageRepository(session, caller.organization_id)
    delivery = await repo.delivery(key)
    if delivery is None:
        raise NotFoundError("delivery not found")
    events = await repo.events_for([delivery.id])
    return delivery_view(delivery, events.get(delivery.id, []))


@router.post("/{delivery_id}/replay", summary="Replay a dead delivery")
async def replay_delivery(
    delivery_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> DeliveryOut:
    """Queue a dead delivery again, with its original idempotency key. 409 unless it is dead."""
    caller.require("messages:send")
    key = path_id(IdKind.DELIVERY, delivery_id, what="delivery")
    repo = MessageRepository(session, caller.organization_id)
    async with session.begin():
        delivery = await replay_dead(repo, key)
        await notify_workers(session)
    runtime.wake_workers()
    events = await repo.events_for([delivery.id])
    return delivery_view(delivery, events.get(delivery.id, []))
