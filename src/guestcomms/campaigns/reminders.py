"""Recurring reminders stop when their condition stops holding for a guest.

STUB: to be implemented with campaigns (issue 4). Called by the events service after a
guest's RSVP or attributes change, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession


async def recheck_reminders(
    session: AsyncSession, *, organization_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> int:
    """Cancel the still-scheduled reminders of ``contact_ids`` whose campaign's condition no
    longer holds for them; return how many deliveries were cancelled."""
    del session, organization_id, contact_ids
    return 0
