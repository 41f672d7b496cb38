"""Dev outbox queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.outbox.models import OutboxMessage


class OutboxRepository:
    """Reads the dev outbox of ``organization_id`` (or, for the operator's page, of all)."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID | None) -> None:
        self._session = session
        self._org = organization_id

    async def page(self, *, before: uuid.UUID | None, limit: int) -> Sequence[OutboxMessage]:
        """Stored messages, newest first."""
        stmt = select(OutboxMessage)
        if self._org is not None:
            stmt = stmt.where(OutboxMessage.organization_id == self._org)
        if before is not None:
            stmt = stmt.where(OutboxMessage.id < before)
        return (
            await self._session.scalars(stmt.order_by(OutboxMessage.id.desc()).limit(limit))
        ).all()

    async def get(self, outbox_id: uuid.UUID) -> OutboxMessage | None:
        """One stored message."""
        stmt = select(OutboxMessage).where(OutboxMessage.id == outbox_id)
        if self._org is not None:
            stmt = stmt.where(OutboxMessage.organization_id == self._org)
        return await self._session.scalar(stmt)
