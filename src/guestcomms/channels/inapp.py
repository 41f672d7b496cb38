"""The in-app channel: messages land in the contact's inbox and are pushed to open streams.

The provider writes a batch of :class:`~guestcomms.inbox.models.InboxItem` rows in one insert,
then announces each item to the :class:`InboxBroker` of this process (the API's Server-Sent
Events streams subscribe there) and, on PostgreSQL, with ``NOTIFY guestcomms_inbox`` so API
processes elsewhere announce it to theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator, Sequence

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.channels.base import (
    Capabilities,
    OutgoingInApp,
    Provider,
    SendReceipt,
    SendResult,
)
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, new_id, to_public
from guestcomms.inbox.models import InboxItem

NOTIFY_CHANNEL = "guestcomms_inbox"
QUEUE_ITEMS = 256  # per open stream; a stream that falls further behind drops the oldest


class InboxBroker:
    """In-process fan-out of new inbox items to the streams open for each contact."""

    def __init__(self) -> None:
        self._streams: dict[uuid.UUID, set[asyncio.Queue[uuid.UUID]]] = {}

    @contextlib.contextmanager
    def subscribe(self, contact_id: uuid.UUID) -> Iterator[asyncio.Queue[uuid.UUID]]:
        """A queue receiving the id of each new item for the contact, while the block runs."""
        queue: asyncio.Queue[uuid.UUID] = asyncio.Queue(maxsize=QUEUE_ITEMS)
        self._streams.setdefault(contact_id, set()).add(queue)
        try:
            yield queue
        finally:
            streams = self._streams.get(contact_id, set())
            streams.discard(queue)
            if not streams:
                self._streams.pop(contact_id, None)

    def publish(self, contact_id: uuid.UUID, item_id: uuid.UUID) -> None:
        """Announce a new item to the contact's open streams."""
        for queue in self._streams.get(contact_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(item_id)

    def publish_notification(self, payload: str) -> None:
        """Announce an item described by a ``NOTIFY`` payload from another process."""
        try:
            data = json.loads(payload)
            self.publish(uuid.UUID(data["contact"]), uuid.UUID(data["item"]))
        except (ValueError, KeyError, TypeError):
            return


class InAppProvider(Provider[OutgoingInApp]):
    """Delivers to the contact's in-app inbox."""

    name = "inapp"
    channel = Channel.INAPP
    capabilities = Capabilities(max_batch_size=1000, supports_idempotency_key=True)

    def __init__(
        self, *, session_factory: async_sessionmaker[AsyncSession], broker: InboxBroker
    ) -> None:
        super().__init__()
        self._sessions = session_factory
        self._broker = broker

    async def send(self, item: OutgoingInApp) -> SendReceipt:
        """Deliver one item."""
        [result] = await self.send_batch([item])
        if isinstance(result, SendReceipt):
            return result
        raise result

    async def send_batch(self, items: Sequence[OutgoingInApp]) -> list[SendResult]:
        """Store every item in one transaction, then announce each to the open streams."""
        now = utc_now()
        ids = [new_id() for _ in items]
        rows = [
            {
                "id": item_id,
                "created_at": now,
                "organization_id": item.organization_id,
                "contact_id": item.contact_id,
                "delivery_id": item.delivery_id,
                "title": item.title,
                "body": item.body,
                "url": item.url,
                "requires_ack": item.requires_ack,
            }
            for item_id, item in zip(ids, items, strict=True)
        ]
        if rows:
            async with self._sessions() as session, session.begin():
                await session.execute(insert(InboxItem), rows)
                if session.get_bind().dialect.name == "postgresql":
                    for item_id, item in zip(ids, items, strict=True):
                        payload = json.dumps({"contact": item.contact_id.hex, "item": item_id.hex})
                        await session.execute(
                            text("SELECT pg_notify(:channel, :payload)"),
                            {"channel": NOTIFY_CHANNEL, "payload": payload},
                        )
        for item_id, item in zip(ids, items, strict=True):
            self._broker.publish(item.contact_id, item_id)
        return [SendReceipt(provider_message_id=to_public(IdKind.INBOX, i)) for i in ids]
