"""Recurring reminders stop when their condition stops holding for a guest.

A campaign whose recurrence has a ``while`` filter (``rsvp = "pending"``) gives each guest's
deliveries the key ``cancellation_key(campaign, contact)``. The events service calls
:func:`recheck_reminders` after a guest's RSVP or attributes change, in the same transaction:
for every such campaign still active, the guests for whom the condition no longer holds have
their unclaimed deliveries of it cancelled, each with a ``cancelled`` event giving the reason.

The campaigns are read ``FOR SHARE`` (PostgreSQL): a fan-out batch holds its campaign ``FOR
UPDATE``, so a batch that read the guest before the change commits first and its deliveries
are then found and cancelled here, or it waits for this transaction and reads the guest as
changed. Either way the guest ends with none of the remaining reminders.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.audiences.selection import AudienceSpec, compile_audience, matching
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.domain.clock import utc_now
from guestcomms.domain.schedule import Recurrence, ScheduleError, cancellation_key
from guestcomms.errors import GuestcommsError


async def recheck_reminders(
    session: AsyncSession, *, organization_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> int:
    """Cancel the still-unclaimed reminders of ``contact_ids`` whose campaign's condition no
    longer holds for them; return how many deliveries were cancelled."""
    if not contact_ids:
        return 0
    repo = CampaignRepository(session, organization_id)
    now = utc_now()
    cancelled = 0
    for campaign in await repo.with_condition():
        try:
            condition = Recurrence.parse(campaign.recurrence or {}).condition
            if not condition:
                continue
            audience = compile_audience(AudienceSpec(organization_id, campaign.event_id, condition))
        except (ScheduleError, GuestcommsError):
            continue  # validated when saved; a campaign that no longer compiles keys nothing
        still = await matching(session, audience, contact_ids)
        stopped = [c for c in dict.fromkeys(contact_ids) if c not in still]
        if stopped:
            cancelled += await repo.cancel_by_keys(
                [cancellation_key(campaign.id, c) for c in stopped],
                now=now,
                reason=f"reminder condition no longer holds: {condition}",
            )
    return cancelled


async def cancel_by_key(session: AsyncSession, *, organization_id: uuid.UUID, key: str) -> int:
    """Cancel the organization's unclaimed deliveries carrying ``key`` (the API's generic
    ``POST /v1/deliveries/cancel``); return how many."""
    repo = CampaignRepository(session, organization_id)
    return await repo.cancel_by_keys([key], now=utc_now(), reason="cancelled by key")
