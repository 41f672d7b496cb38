"""The one query the bounce listener needs before it knows the organization.

A bounce arriving by SMTP names a delivery (through its VERP address) but no organization, and
the listener belongs to the operator, not to a tenant: so this lookup is deliberately not
scoped to one organization. Everything after it goes through the organization's own
repositories.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.messages.models import Delivery


class BounceRepository:
    """Cross-tenant look-ups for the operator's bounce listener."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def organization_of(self, delivery_id: uuid.UUID) -> uuid.UUID | None:
        """The organization that owns ``delivery_id``, or None if there is no such delivery."""
        return await self._session.scalar(
            select(Delivery.organization_id).where(Delivery.id == delivery_id)
        )
