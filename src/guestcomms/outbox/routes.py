"""``GET /v1/outbox``: read back what the dev outbox provider stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, split_page
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.outbox.models import OutboxMessage
from guestcomms.outbox.repository import OutboxRepository
from guestcomms.outbox.schemas import OutboxItem, OutboxPage

router = APIRouter(prefix="/v1/outbox", tags=["outbox"])


def outbox_item(row: OutboxMessage) -> OutboxItem:
    """The API view of an outbox row."""
    return OutboxItem(
        id=to_public(IdKind.OUTBOX, row.id),
        delivery_id=to_public(IdKind.DELIVERY, row.delivery_id),
        message_id_header=row.message_id_header,
        sender=row.sender,
        recipient=row.recipient,
        subject=row.subject,
        text=row.text,
        html=row.html,
        created_at=row.created_at,
    )


@router.get("", summary="Read the dev outbox")
async def list_outbox(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    before: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> OutboxPage:
    """Emails the dev outbox provider stored, newest first (only when no SMTP is set up)."""
    caller.require("messages:read")
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.OUTBOX, before, field="before") if before else None
    rows, next_cursor = split_page(
        await OutboxRepository(session, caller.organization_id).page(before=cursor, limit=size + 1),
        size=size,
        kind=IdKind.OUTBOX,
    )
    return OutboxPage(items=[outbox_item(r) for r in rows], next_cursor=next_cursor)
