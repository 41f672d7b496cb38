"""In-app inbox endpoints: list, unread count, read, acknowledge, and a live stream (SSE).

The platform's backend calls these with its API key on behalf of a signed-in guest. Reading an
item marks its delivery delivered; acknowledging records an ``acknowledged`` event on the
delivery (what an emergency workflow waits for).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.contacts.repository import ContactRepository
from guestcomms.db.queue import insert_events
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus, EventType
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.domain.states import can_transition
from guestcomms.errors import NotFoundError
from guestcomms.inbox.models import InboxItem
from guestcomms.inbox.repository import InboxRepository
from guestcomms.inbox.schemas import InboxItemOut, InboxPage
from guestcomms.messages.repository import MessageRepository

router = APIRouter(tags=["inbox"])
HEARTBEAT_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream


def item_out(item: InboxItem) -> InboxItemOut:
    """The API view of an inbox item."""
    return InboxItemOut(
        id=to_public(IdKind.INBOX, item.id),
        delivery_id=to_public(IdKind.DELIVERY, item.delivery_id),
        title=item.title,
        body=item.body,
        url=item.url,
        requires_ack=item.requires_ack,
        read_at=item.read_at,
        acked_at=item.acked_at,
        created_at=item.created_at,
    )


async def _contact_key(session: SessionDep, caller: CallerDep, contact_id: str) -> uuid.UUID:
    key = path_id(IdKind.CONTACT, contact_id, what="contact")
    if await ContactRepository(session, caller.organization_id).get(key) is None:
        raise NotFoundError("contact not found")
    return key


@router.get("/v1/contacts/{contact_id}/inbox", summary="A contact's in-app inbox")
async def list_inbox(
    contact_id: str,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    unread: Annotated[bool, Query(description="only unread items")] = False,
    limit: Limit = None,
    before: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> InboxPage:
    """The contact's in-app messages, newest first, and how many are unread."""
    caller.require("inbox:read")
    key = await _contact_key(session, caller, contact_id)
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.INBOX, before, field="before") if before else None
    repo = InboxRepository(session, caller.organization_id)
    rows, next_cursor = split_page(
        await repo.page(key, unread_only=unread, before=cursor, limit=size + 1),
        size=size,
        kind=IdKind.INBOX,
    )
    return InboxPage(
        items=[item_out(i) for i in rows],
        unread=await repo.unread_count(key),
        next_cursor=next_cursor,
    )


async def _mark(item_id: str, session: SessionDep, caller: CallerDep, *, ack: bool) -> InboxItemOut:
    key = path_id(IdKind.INBOX, item_id, what="inbox item")
    now = utc_now()
    async with session.begin():
        item = await InboxRepository(session, caller.organization_id).get(key)
        if item is None:
            raise NotFoundError("inbox item not found")
        first_time = (item.acked_at if ack else item.read_at) is None
        item.read_at = item.read_at or now
        if ack:
            item.acked_at = item.acked_at or now
        if first_time:
            delivery = await MessageRepository(session, caller.organization_id).delivery(
                item.delivery_id, for_update=True
            )
            if delivery is not None:
                if can_transition(DeliveryStatus(delivery.status), DeliveryStatus.DELIVERED):
                    delivery.status = DeliveryStatus.DELIVERED.value
                    delivery.updated_at = now
                event = EventType.ACKNOWLEDGED if ack else EventType.READ
                await insert_events(
                    session, [(caller.organization_id, delivery.id, event, None)], now=now
                )
    return item_out(item)


@router.post("/v1/inbox/{item_id}/read", summary="Mark an in-app message read")
async def mark_read(item_id: str, session: SessionDep, caller: CallerDep) -> InboxItemOut:
    """Mark read (idempotent); the delivery becomes delivered and records `read`."""
    caller.require("inbox:write")
    return await _mark(item_id, session, caller, ack=False)


@router.post("/v1/inbox/{item_id}/ack", summary="Acknowledge an in-app message")
async def acknowledge(item_id: str, session: SessionDep, caller: CallerDep) -> InboxItemOut:
    """Acknowledge (idempotent); the delivery records `acknowledged`."""
    caller.require("inbox:write")
    return await _mark(item_id, session, caller, ack=True)


@router.get(
    "/v1/contacts/{contact_id}/inbox/stream",
    summary="Live in-app messages (Server-Sent Events)",
    response_class=StreamingResponse,
)
async def stream_inbox(
    contact_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> StreamingResponse:
    """`text/event-stream`: one `message` event (the item as JSON) per new in-app message for
    the contact, within moments of its send; a comment line every 15 s keeps it open."""
    caller.require("inbox:read")
    key = await _contact_key(session, caller, contact_id)
    await session.close()  # a stream lasts long: hold no connection while idle
    organization = caller.organization_id

    async def events() -> AsyncIterator[str]:
        seen: set[object] = set()
        with runtime.inbox.subscribe(key) as queue:
            yield ": connected\n\n"
            while True:
                try:
                    item_id = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if item_id in seen:  # announced both in-process and by NOTIFY
                    continue
                seen.add(item_id)
                async with runtime.sessions() as reader:
                    item = await InboxRepository(reader, organization).get(item_id)
                if item is not None:
                    view = item_out(item)
                    data = json.dumps(view.model_dump(mode="json"))
                    yield f"event: message\nid: {view.id}\ndata: {data}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
