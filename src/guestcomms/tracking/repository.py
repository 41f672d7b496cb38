"""Every tracking query, scoped to one organization: the delivery a token names, the clicks of
a burst window, recording events, and the unique human opens and clicks of a message."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.domain.enums import EventType
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.tracking.models import TrackingEvent

OPEN = "open"
CLICK = "click"


@dataclass(frozen=True, slots=True)
class TrackedDelivery:
    """What the routes need of the delivery a token names: when it was handed to the
    provider (its first ``sent`` event; ``None`` if not recorded yet)."""

    id: uuid.UUID
    sent_at: datetime | None


class TrackingRepository:
    """Reads and writes the tracking events of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def delivery(self, delivery_id: uuid.UUID) -> TrackedDelivery | None:
        """The delivery with its send time, or ``None`` if it is not this organization's.
        One query: the ``sent`` event is found through ``ix_delivery_events_delivery``."""
        sent_at = (
            select(func.min(DeliveryEvent.created_at))
            .where(
                DeliveryEvent.delivery_id == Delivery.id,
                DeliveryEvent.type == EventType.SENT.value,
            )
            .scalar_subquery()
        )
        row = (
            await self._session.execute(
                select(Delivery.id, sent_at.label("sent_at")).where(
                    Delivery.id == delivery_id, Delivery.organization_id == self._org
                )
            )
        ).first()
        if row is None:
            return None
        # min() keeps the column's type, so the time comes back aware UTC on SQLite too
        return TrackedDelivery(id=row.id, sent_at=row.sent_at)

    async def links_clicked_since(self, delivery_id: uuid.UUID, since: datetime) -> set[int]:
        """The distinct link indexes of the delivery clicked at or after ``since``."""
        rows = await self._session.scalars(
            select(TrackingEvent.link_index)
            .distinct()
            .where(
                TrackingEvent.organization_id == self._org,
                TrackingEvent.delivery_id == delivery_id,
                TrackingEvent.kind == CLICK,
                TrackingEvent.created_at >= since,
            )
        )
        return {index for index in rows if index is not None}

    async def add(self, event: TrackingEvent) -> None:
        """Insert one event (its organization set to this repository's)."""
        event.organization_id = self._org
        self._session.add(event)
        await self._session.flush()

    async def unique_opens(
        self,
        *,
        message_id: uuid.UUID | None = None,
        delivery_ids: Collection[uuid.UUID] | None = None,
        include_machine: bool = False,
    ) -> int:
        """How many deliveries (of ``message_id``, or among ``delivery_ids``) were opened at
        least once; machine opens (``tracking.machine``) are left out unless asked for."""
        return await self._unique(OPEN, message_id, delivery_ids, include_machine)

    async def unique_clicks(
        self,
        *,
        message_id: uuid.UUID | None = None,
        delivery_ids: Collection[uuid.UUID] | None = None,
        include_machine: bool = False,
    ) -> int:
        """How many deliveries had at least one click, as :meth:`unique_opens` counts."""
        return await self._unique(CLICK, message_id, delivery_ids, include_machine)

    async def _unique(
        self,
        kind: str,
        message_id: uuid.UUID | None,
        delivery_ids: Collection[uuid.UUID] | None,
        include_machine: bool,
    ) -> int:
        if (message_id is None) == (delivery_ids is None):
            raise ValueError("give exactly one of message_id and delivery_ids")
        conditions: list[ColumnElement[bool]] = [
            TrackingEvent.organization_id == self._org,
            TrackingEvent.kind == kind,
        ]
        if not include_machine:
            conditions.append(TrackingEvent.machine.is_(False))
        if delivery_ids is not None:
            conditions.append(TrackingEvent.delivery_id.in_(set(delivery_ids)))
        else:
            conditions.append(
                TrackingEvent.delivery_id.in_(
                    select(Delivery.id).where(
                        Delivery.message_id == message_id, Delivery.organization_id == self._org
                    )
                )
            )
        count = await self._session.scalar(
            select(func.count(func.distinct(TrackingEvent.delivery_id))).where(*conditions)
        )
        return int(count or 0)
