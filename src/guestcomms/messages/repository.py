"""Every message, delivery and idempotency-record query, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.db.queue import insert_events
from guestcomms.domain.enums import CLAIMABLE, DeliveryStatus, EventType
from guestcomms.messages.models import Delivery, DeliveryEvent, IdempotencyRecord, Message

INSERT_CHUNK = 2000  # rows per INSERT: large enough to amortise, small enough for bind limits


class MessageRepository:
    """Reads and writes the messages and deliveries of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    @property
    def organization_id(self) -> uuid.UUID:
        """The organization this repository is scoped to."""
        return self._org

    async def add_message(self, message: Message) -> None:
        """Insert a message."""
        message.organization_id = self._org
        self._session.add(message)
        await self._session.flush()

    async def insert_deliveries(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert delivery rows (already carrying ids) in chunks of ``INSERT_CHUNK``."""
        conn = await self._session.connection()
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = [
                {**r, "organization_id": self._org} for r in rows[start : start + INSERT_CHUNK]
            ]
            await conn.execute(insert(Delivery), chunk)

    async def get(self, message_id: uuid.UUID, *, for_update: bool = False) -> Message | None:
        """The message, or ``None``."""
        stmt = select(Message).where(Message.id == message_id, Message.organization_id == self._org)
        if for_update:
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt)

    async def page(self, *, before: uuid.UUID | None, limit: int) -> Sequence[Message]:
        """Messages newest first, older than ``before``."""
        stmt = select(Message).where(Message.organization_id == self._org)
        if before is not None:
            stmt = stmt.where(Message.id < before)
        return (await self._session.scalars(stmt.order_by(Message.id.desc()).limit(limit))).all()

    async def status_counts(self, message_id: uuid.UUID) -> dict[str, int]:
        """How many deliveries of the message are in each status."""
        rows = await self._session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.organization_id == self._org, Delivery.message_id == message_id)
            .group_by(Delivery.status)
        )
        return {row[0]: row[1] for row in rows}

    async def deliveries(
        self, message_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[Delivery]:
        """A page of the message's deliveries in creation order."""
        stmt = select(Delivery).where(
            Delivery.organization_id == self._org, Delivery.message_id == message_id
        )
        if after is not None:
            stmt = stmt.where(Delivery.id > after)
        return (await self._session.scalars(stmt.order_by(Delivery.id).limit(limit))).all()

    async def events_for(
        self, delivery_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[DeliveryEvent]]:
        """The events of each delivery, oldest first."""
        if not delivery_ids:
            return {}
        rows = await self._session.scalars(
            select(DeliveryEvent)
            .where(
                DeliveryEvent.organization_id == self._org,
                DeliveryEvent.delivery_id.in_(delivery_ids),
            )
            .order_by(DeliveryEvent.delivery_id, DeliveryEvent.id)
        )
        grouped: dict[uuid.UUID, list[DeliveryEvent]] = {}
        for event in rows:
            grouped.setdefault(event.delivery_id, []).append(event)
        return grouped

    async def cancel_pending(self, message_id: uuid.UUID, *, now: datetime) -> int:
        """Cancel the message's deliveries no worker holds yet; return how many."""
        result = await self._session.execute(
            update(Delivery)
            .where(
                Delivery.organization_id == self._org,
                Delivery.message_id == message_id,
                Delivery.status.in_([s.value for s in CLAIMABLE]),
            )
            .values(status=DeliveryStatus.CANCELLED.value, updated_at=now)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(result.scalars())
        await insert_events(
            self._session, [(self._org, i, EventType.CANCELLED, None) for i in ids], now=now
        )
        return len(ids)

    async def delivery(
        self, delivery_id: uuid.UUID, *, for_update: bool = False
    ) -> Delivery | None:
        """One delivery of this organization, or ``None``."""
        stmt = select(Delivery).where(
            Delivery.organization_id == self._org, Delivery.id == delivery_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt)

    async def deliveries_by_status(
        self, status: str | None, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[Delivery]:
        """Deliveries of this organization (in one status, if given) in creation order."""
        stmt = select(Delivery).where(Delivery.organization_id == self._org)
        if status is not None:
            stmt = stmt.where(Delivery.status == status)
        if after is not None:
            stmt = stmt.where(Delivery.id > after)
        return (await self._session.scalars(stmt.order_by(Delivery.id).limit(limit))).all()

    async def requeue(self, delivery: Delivery, *, now: datetime) -> None:
        """Put a delivery back in the queue, due now, with a fresh attempt budget.

        Its idempotency key is unchanged, so a provider that saw it before can deduplicate.
        """
        delivery.status = DeliveryStatus.QUEUED.value
        delivery.attempts = 0
        delivery.send_at = now
        delivery.updated_at = now
        await self._session.flush()
        await insert_events(
            self._session,
            [(self._org, delivery.id, EventType.REPLAYED, {"previous_error": delivery.last_error})],
            now=now,
        )

    async def idempotency_record(self, key: str) -> IdempotencyRecord | None:
        """The stored first response for ``key``, if any."""
        return await self._session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.organization_id == self._org, IdempotencyRecord.key == key
            )
        )

    async def add_idempotency_record(self, record: IdempotencyRecord) -> None:
        """Store the first response for a key (unique per organization)."""
        record.organization_id = self._org
        self._session.add(record)
        await self._session.flush()
