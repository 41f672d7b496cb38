"""Every campaign query: campaigns and their message's deliveries, scoped to one organization;
and, apart, the two cross-organization statements the fan-out runner uses to find work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.audiences.models import Audience
from guestcomms.campaigns.models import ACTIVE, Campaign, CampaignStatus
from guestcomms.db import bulk
from guestcomms.domain.enums import CLAIMABLE, DeliveryStatus, EventType
from guestcomms.events.models import Event
from guestcomms.messages.models import Delivery, Message
from guestcomms.organizations.models import Organization

#: a delivery no worker has claimed: a pause holds these, a cancel or an edit ends them
UNCLAIMED = [*(s.value for s in CLAIMABLE), DeliveryStatus.HELD.value]
_CLAIMABLE = [s.value for s in CLAIMABLE]


class CampaignRepository:
    """Reads and writes the campaigns of ``organization_id`` and their deliveries only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self.session = session
        self._org = organization_id

    @property
    def organization_id(self) -> uuid.UUID:
        """The organization this repository is scoped to."""
        return self._org

    async def add(self, campaign: Campaign) -> None:
        """Insert a campaign."""
        campaign.organization_id = self._org
        self.session.add(campaign)
        await self.session.flush()

    async def get(
        self, campaign_id: uuid.UUID, *, for_update: bool = False, shared: bool = False
    ) -> Campaign | None:
        """The campaign, or ``None``; locked until commit with ``for_update`` (or ``shared``,
        which only keeps others from locking it for update) on PostgreSQL."""
        stmt = select(Campaign).where(
            Campaign.id == campaign_id, Campaign.organization_id == self._org
        )
        if for_update or shared:
            stmt = stmt.with_for_update(read=shared and not for_update)
        # populate_existing: a row read again under its lock must show what is committed now
        return await self.session.scalar(stmt.execution_options(populate_existing=True))

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Campaign]:
        """Campaigns oldest first, after ``after``."""
        stmt = select(Campaign).where(Campaign.organization_id == self._org)
        if after is not None:
            stmt = stmt.where(Campaign.id > after)
        return (await self.session.scalars(stmt.order_by(Campaign.id).limit(limit))).all()

    async def remove(self, campaign: Campaign) -> None:
        """Delete a campaign; its message, deliveries and their events go with it (cascade)."""
        await self.session.execute(
            delete(Campaign).where(
                Campaign.id == campaign.id, Campaign.organization_id == self._org
            )
        )

    async def with_condition(self) -> Sequence[Campaign]:
        """Campaigns whose deliveries may still go out and that carry a ``while`` condition
        (they alone have a ``cancellation_key``), locked against a concurrent fan-out batch
        (``FOR SHARE`` on PostgreSQL: rechecks do not block one another)."""
        stmt = (
            select(Campaign)
            .where(
                Campaign.organization_id == self._org,
                Campaign.status.in_([s.value for s in ACTIVE]),
                Campaign.cancellation_key.is_not(None),
            )
            .order_by(Campaign.id)
            .with_for_update(read=True)
        )
        return (await self.session.scalars(stmt)).all()

    async def audience(self, audience_id: uuid.UUID) -> Audience | None:
        """One of this organization's saved audiences."""
        return await self.session.scalar(
            select(Audience).where(
                Audience.id == audience_id, Audience.organization_id == self._org
            )
        )

    async def event(self, event_id: uuid.UUID) -> Event | None:
        """One of this organization's events."""
        return await self.session.scalar(
            select(Event).where(Event.id == event_id, Event.organization_id == self._org)
        )

    async def organization_timezone(self) -> str:
        """The organization's zone: the last fallback for a guest's local time."""
        zone = await self.session.scalar(
            select(Organization.timezone).where(Organization.id == self._org)
        )
        return zone or "UTC"

    async def message_of(self, campaign_id: uuid.UUID) -> Message | None:
        """The campaign's message (written when it starts), or ``None``."""
        return await self.session.scalar(
            select(Message).where(
                Message.organization_id == self._org, Message.campaign_id == campaign_id
            )
        )

    async def add_message(self, message: Message) -> None:
        """Insert the campaign's message."""
        message.organization_id = self._org
        self.session.add(message)
        await self.session.flush()

    async def add_recipients(self, message_id: uuid.UUID, count: int) -> None:
        """Count ``count`` more recipients on the message."""
        await self.session.execute(
            update(Message)
            .where(Message.id == message_id, Message.organization_id == self._org)
            .values(recipient_count=Message.recipient_count + count)
            .execution_options(synchronize_session=False)
        )

    async def status_counts(self, message_id: uuid.UUID) -> dict[str, int]:
        """How many deliveries of the message are in each status."""
        rows = await self.session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.organization_id == self._org, Delivery.message_id == message_id)
            .group_by(Delivery.status)
        )
        return {row[0]: row[1] for row in rows}

    async def delete_unclaimed(self, message_id: uuid.UUID) -> int:
        """Delete the message's deliveries no worker has claimed; return how many."""
        result = await self.session.execute(
            delete(Delivery)
            .where(
                Delivery.organization_id == self._org,
                Delivery.message_id == message_id,
                Delivery.status.in_(UNCLAIMED),
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def any_handed_out(self, message_id: uuid.UUID) -> bool:
        """Whether any delivery of the message is neither unclaimed nor cancelled, i.e. a
        worker has claimed it (and may have sent it)."""
        found = await self.session.scalar(
            select(Delivery.id)
            .where(
                Delivery.organization_id == self._org,
                Delivery.message_id == message_id,
                Delivery.status.not_in([*UNCLAIMED, DeliveryStatus.CANCELLED.value]),
            )
            .limit(1)
        )
        return found is not None

    async def _move(
        self,
        message_id: uuid.UUID,
        *,
        sources: Sequence[str],
        target: str | object,
        event: EventType,
        detail: dict[str, str] | None,
        now: datetime,
    ) -> int:
        """Move the message's deliveries in ``sources`` to ``target`` and record ``event``
        on each, in bulk; return how many moved."""
        result = await self.session.execute(
            update(Delivery)
            .where(
                Delivery.organization_id == self._org,
                Delivery.message_id == message_id,
                Delivery.status.in_(list(sources)),
            )
            .values(status=target, updated_at=now)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(result.scalars())
        await bulk.insert_events(
            self.session,
            organization_id=self._org,
            delivery_ids=ids,
            event=event,
            detail=detail,
            now=now,
        )
        return len(ids)

    async def hold(self, message_id: uuid.UUID, *, now: datetime) -> int:
        """Take the message's unclaimed deliveries out of the claim's reach (``held``)."""
        return await self._move(
            message_id,
            sources=_CLAIMABLE,
            target=DeliveryStatus.HELD.value,
            event=EventType.HELD,
            detail=None,
            now=now,
        )

    async def release(self, message_id: uuid.UUID, *, now: datetime) -> int:
        """Give held deliveries back to the queue: ``queued`` if due, else ``scheduled``."""
        due = case(
            (Delivery.send_at <= now, DeliveryStatus.QUEUED.value),
            else_=DeliveryStatus.SCHEDULED.value,
        )
        return await self._move(
            message_id,
            sources=[DeliveryStatus.HELD.value],
            target=due,
            event=EventType.RESUMED,
            detail=None,
            now=now,
        )

    async def cancel_unclaimed(self, message_id: uuid.UUID, *, now: datetime, reason: str) -> int:
        """Cancel the message's deliveries no worker has claimed (held ones too)."""
        return await self._move(
            message_id,
            sources=UNCLAIMED,
            target=DeliveryStatus.CANCELLED.value,
            event=EventType.CANCELLED,
            detail={"reason": reason},
            now=now,
        )

    async def cancel_by_keys(self, keys: Sequence[str], *, now: datetime, reason: str) -> int:
        """Cancel this organization's unclaimed deliveries carrying any of ``keys``."""
        cancelled = 0
        for start in range(0, len(keys), KEYS_PER_STATEMENT):
            result = await self.session.execute(
                update(Delivery)
                .where(
                    Delivery.organization_id == self._org,
                    Delivery.cancellation_key.in_(keys[start : start + KEYS_PER_STATEMENT]),
                    Delivery.status.in_(UNCLAIMED),
                )
                .values(status=DeliveryStatus.CANCELLED.value, updated_at=now)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
            ids = list(result.scalars())
            await bulk.insert_events(
                self.session,
                organization_id=self._org,
                delivery_ids=ids,
                event=EventType.CANCELLED,
                detail={"reason": reason},
                now=now,
            )
            cancelled += len(ids)
        return cancelled


KEYS_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit


async def runnable(session: AsyncSession, *, now: datetime, limit: int = 10) -> list[uuid.UUID]:
    """Campaigns (of any organization) that are ``running`` and that no live runner holds:
    new ones, and those whose runner's lease ran out (it crashed or stalled)."""
    rows = await session.scalars(
        select(Campaign.id)
        .where(
            Campaign.status == CampaignStatus.RUNNING.value,
            or_(Campaign.lease_until.is_(None), Campaign.lease_until < now),
        )
        .order_by(Campaign.id)
        .limit(limit)
    )
    return list(rows)


async def take_lease(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    token: uuid.UUID,
    now: datetime,
    lease_seconds: float,
) -> uuid.UUID | None:
    """Lease a running campaign to the runner holding ``token`` unless a live lease holds it;
    return its organization, or ``None`` if another runner has it. The caller commits."""
    result = await session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == CampaignStatus.RUNNING.value,
            or_(Campaign.lease_until.is_(None), Campaign.lease_until < now),
        )
        .values(lease_token=token, lease_until=now + timedelta(seconds=lease_seconds))
        .returning(Campaign.organization_id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def drop_lease(session: AsyncSession, campaign_id: uuid.UUID, *, token: uuid.UUID) -> None:
    """Give up a lease this runner still holds (it stops before the campaign is done)."""
    await session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.lease_token == token)
        .values(lease_token=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
