"""Every tracking query: the deliveries tokens name, the clicks of a burst window, recording
events (``HitRepository``, for a batch of hits across organizations, each query filtered by the
organizations the tokens name), and one organization's unique human opens and clicks of a
message (``TrackingRepository``)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, ScalarSelect, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.domain.enums import EventType
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.tracking.models import TrackingEvent

OPEN = "open"
CLICK = "click"

# (organization, delivery): what a token names
DeliveryKey = tuple[uuid.UUID, uuid.UUID]
# the table, not the entity, for inserts: a plain executemany, without the ORM's bulk path
_EVENTS = cast(Table, TrackingEvent.__table__)


@dataclass(frozen=True, slots=True)
class TrackedDelivery:
    """What the routes need of the delivery a token names: when it was handed to the
    provider (its first ``sent`` event; ``None`` if not recorded yet)."""

    id: uuid.UUID
    sent_at: datetime | None


def _sent_at() -> ScalarSelect[datetime]:
    """The delivery's first ``sent`` event, found through ``ix_delivery_events_delivery``."""
    return (
        select(func.min(DeliveryEvent.created_at))
        .where(
            DeliveryEvent.delivery_id == Delivery.id,
            DeliveryEvent.type == EventType.SENT.value,
        )
        .scalar_subquery()
    )


class HitRepository:
    """The queries of one batch of tracking hits (``tracking.service.record_hits``). A batch
    spans organizations: every query takes the (organization, delivery) pairs the verified
    tokens name, and nothing of a delivery is returned unless it is that organization's."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def deliveries(self, keys: Collection[DeliveryKey]) -> dict[DeliveryKey, TrackedDelivery]:
        """The deliveries of ``keys`` that exist in their organization, with their send time.
        One query by primary key."""
        if not keys:
            return {}
        rows = await self._session.execute(
            select(Delivery.organization_id, Delivery.id, _sent_at().label("sent_at")).where(
                Delivery.id.in_({delivery for _, delivery in keys})
            )
        )
        wanted = set(keys)
        # min() keeps the column's type, so the time comes back aware UTC on SQLite too
        return {
            (row.organization_id, row.id): TrackedDelivery(id=row.id, sent_at=row.sent_at)
            for row in rows
            if (row.organization_id, row.id) in wanted
        }

    async def clicks_since(
        self, keys: Collection[DeliveryKey], since: datetime
    ) -> dict[DeliveryKey, list[tuple[int, datetime]]]:
        """The clicks (link index, time) of each delivery of ``keys`` at or after ``since``,
        through ``ix_tracking_events_delivery``."""
        if not keys:
            return {}
        rows = await self._session.execute(
            select(
                TrackingEvent.organization_id,
                TrackingEvent.delivery_id,
                TrackingEvent.link_index,
                TrackingEvent.created_at,
            ).where(
                TrackingEvent.organization_id.in_({org for org, _ in keys}),
                TrackingEvent.delivery_id.in_({delivery for _, delivery in keys}),
                TrackingEvent.kind == CLICK,
                TrackingEvent.created_at >= since,
            )
        )
        wanted = set(keys)
        clicks: dict[DeliveryKey, list[tuple[int, datetime]]] = defaultdict(list)
        for row in rows:
            key = (row.organization_id, row.delivery_id)
            if key in wanted and row.link_index is not None:
                clicks[key].append((row.link_index, row.created_at))
        return clicks

    async def add_all(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (``TrackingEvent`` columns, ``organization_id`` set) in one
        statement."""
        if rows:
            await self._session.execute(insert(_EVENTS), list(rows))


class TrackingRepository:
    """Reads the tracking events of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

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
