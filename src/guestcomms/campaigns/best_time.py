"""Send-time optimisation for a campaign: each guest's best hour within a window, learned from
their own opens and clicks and shrunk towards the event's and the organization's patterns
(the model is ``domain.send_time``; docs/send-time.md has its method and measured effect).

The organization's and the event's patterns are learned once per fan-out run from their human
engagement (``tracking_events`` not flagged as machine, joined to the deliveries' contacts);
each batch then reads only its own guests' history. The window opens at the guest's scheduled
time (or now, if that has passed) and lasts ``window_hours``; within each batch no hour takes
more than ``max_share`` of the batch's guests (``plan_send_times``), which bounds every hour's
share of the whole campaign to ``max_share`` plus at most one guest per batch.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.audiences.selection import Recipient
from guestcomms.campaigns.plan import Plan
from guestcomms.contacts.models import Contact
from guestcomms.domain.send_time import (
    EVENT_PRIOR_STRENGTH,
    ORGANIZATION_PRIOR_STRENGTH,
    EngagementProfile,
    GuestInput,
    SendChoice,
    flat_profile,
    learn,
    learn_pooled,
    plan_send_times,
)
from guestcomms.messages.models import Delivery, Message
from guestcomms.tracking.models import TrackingEvent

HISTORY_DAYS = 365  # engagement older than this says little about when a guest reads now
POOLED_EVENTS = 200_000  # the newest engagement events a pattern is learned from, at most
IN_CHUNK = 1000


Engagement = tuple[uuid.UUID, str | None, datetime]  # contact, their zone, when


def _engagement(
    organization_id: uuid.UUID, since: datetime
) -> Select[uuid.UUID, str | None, datetime]:
    return (
        select(Delivery.contact_id, Contact.timezone, TrackingEvent.created_at)
        .select_from(TrackingEvent)
        .join(Delivery, Delivery.id == TrackingEvent.delivery_id)
        .join(Contact, Contact.id == Delivery.contact_id)
        .where(
            TrackingEvent.organization_id == organization_id,
            TrackingEvent.machine.is_(False),
            TrackingEvent.created_at >= since,
        )
    )


@dataclass(frozen=True, slots=True)
class SendTimeModel:
    """The prior a campaign's guests are shrunk towards: the event's pattern (itself shrunk
    towards the organization's) or, without an event, the organization's."""

    prior: EngagementProfile

    @classmethod
    async def learn(
        cls, session: AsyncSession, plan: Plan, *, organization_id: uuid.UUID, now: datetime
    ) -> SendTimeModel:
        """Learn the organization's (and the campaign's event's) pattern."""
        since = now - timedelta(days=HISTORY_DAYS)
        query = _engagement(organization_id, since)
        newest = TrackingEvent.created_at.desc()
        rows = await _rows(session, query.order_by(newest).limit(POOLED_EVENTS))
        organization = learn_pooled(
            _histories(plan, rows), prior=flat_profile(), prior_strength=ORGANIZATION_PRIOR_STRENGTH
        )
        if plan.event is None:
            return cls(prior=organization)
        at_event = query.join(Message, Message.id == Delivery.message_id).where(
            Message.event_id == plan.event.id
        )
        rows = await _rows(session, at_event.order_by(newest).limit(POOLED_EVENTS))
        event = learn_pooled(
            _histories(plan, rows), prior=organization, prior_strength=EVENT_PRIOR_STRENGTH
        )
        return cls(prior=event)

    async def choose(
        self,
        session: AsyncSession,
        plan: Plan,
        guests: Sequence[Recipient],
        *,
        organization_id: uuid.UUID,
        started: datetime,
        now: datetime,
    ) -> dict[uuid.UUID, SendChoice]:
        """Each guest's send time and its confidence, for one batch."""
        spec = plan.send_time
        if spec is None or not guests:
            return {}
        history = await self._history(session, organization_id, guests, now=now)
        windows: dict[datetime, list[GuestInput[uuid.UUID]]] = defaultdict(list)
        for guest in guests:
            zone = ZoneInfo(plan.zone_name(guest.timezone))
            opens = max(plan.send_times(guest.timezone, started=started, now=now)[0], now)
            profile = learn(history.get(guest.contact_id, ()), zone, prior=self.prior)
            windows[opens].append(GuestInput(guest.contact_id, zone, profile))
        chosen: dict[uuid.UUID, SendChoice] = {}
        for opens, inputs in windows.items():
            chosen.update(
                plan_send_times(
                    inputs,
                    window_start=opens,
                    window_end=opens + timedelta(hours=spec.window_hours),
                    max_share=spec.max_share,
                )
            )
        return chosen

    async def _history(
        self,
        session: AsyncSession,
        organization_id: uuid.UUID,
        guests: Sequence[Recipient],
        *,
        now: datetime,
    ) -> dict[uuid.UUID, list[datetime]]:
        query = _engagement(organization_id, now - timedelta(days=HISTORY_DAYS))
        ids = [g.contact_id for g in guests]
        found: dict[uuid.UUID, list[datetime]] = defaultdict(list)
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            result = await session.execute(query.where(Delivery.contact_id.in_(chunk)))
            for row in result:
                found[row.contact_id].append(row.created_at)
        return found


async def _rows(
    session: AsyncSession, query: Select[uuid.UUID, str | None, datetime]
) -> list[Engagement]:
    return [(row[0], row[1], row[2]) for row in await session.execute(query)]


def _histories(plan: Plan, rows: Sequence[Engagement]) -> list[tuple[list[datetime], ZoneInfo]]:
    # each contact's engagement in their own zone (theirs, else the event's or organization's)
    by_contact: dict[uuid.UUID, tuple[str | None, list[datetime]]] = {}
    for contact_id, timezone, at in rows:
        by_contact.setdefault(contact_id, (timezone, []))[1].append(at)
    return [(times, ZoneInfo(plan.zone_name(zone))) for zone, times in by_contact.values()]
