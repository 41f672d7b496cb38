"""``GET /v1/audit``: the caller's organization's audit log, a page at a time (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import MAX_DB_INT, Limit, page_size
from guestcomms.audit.repository import entries_page
from guestcomms.audit.schemas import AuditEntryOut, AuditPage
from guestcomms.domain.ids import IdKind, to_public

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", summary="List audit entries")
async def list_audit_entries(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_DB_INT, description="cursor: the seq of the previous page's last entry"),
    ] = None,
) -> AuditPage:
    """The organization's entries in the order they were appended. Needs the admin scope."""
    caller.require("admin")
    size = page_size(limit, settings=runtime.settings)
    rows = await entries_page(
        session, organization_id=caller.organization_id, after=after or 0, limit=size + 1
    )
    items = [
        AuditEntryOut(
            id=to_public(IdKind.AUDIT_ENTRY, row.id),
            seq=row.seq,
            actor=row.actor,
            action=row.action,
            target=row.target,
            detail=row.detail,
            source=row.source,
            created_at=row.created_at,
        )
        for row in rows[:size]
    ]
    return AuditPage(items=items, next_cursor=rows[size - 1].seq if len(rows) > size else None)
