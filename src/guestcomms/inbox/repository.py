"""In-app inbox queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.inbox.models import InboxItem


class InboxRepository:
    """Reads and updates the inbox items of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def page(
        self, contact_id: uuid.UUID, *, unread_only: bool, before: uuid.UUID | None, limit: int
    ) -> Sequence[InboxItem]:
        """The contact's items, newest first."""
        stmt = select(InboxItem).where(
            InboxItem.organization_id == self._org, InboxItem.contact_id == contact_id
        )
        if unread_only:
            stmt = stmt.where(InboxItem.read_at.is_(None))
        if before is not None:
            stmt = stmt.where(InboxItem.id < before)
        return (await self._session.scalars(stmt.order_by(InboxItem.id.desc()).limit(limit))).all()

    async def unread_count(self, contact_id: uuid.UUID) -> int:
        """How many of the contact's items are unread."""
        count = await self._session.scalar(
            select(func.count()).where(
                InboxItem.organization_id == self._org,
                InboxItem.contact_id == contact_id,
                InboxItem.read_at.is_(None),
            )
        )
        return int(count or 0)

    async def get(self, item_id: uuid.UUID) -> InboxItem | None:
        """One item, or ``None``."""
        return await self._session.scalar(
            select(InboxItem).where(InboxItem.organization_id == self._org, InboxItem.id == item_id)
        )
