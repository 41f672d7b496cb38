"""The dev outbox provider: stores each rendered email in the database instead of sending it.

It is the default when no SMTP host is configured, so a newcomer sees real output with no
accounts: read it back at ``GET /v1/outbox``, ``/outbox`` or ``guestcomms outbox``. It writes
a whole batch in one statement, which also makes it the reference sink for benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.channels.base import (
    Capabilities,
    OutgoingEmail,
    Provider,
    SendReceipt,
    SendResult,
)
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import new_id
from guestcomms.outbox.models import OutboxMessage


class OutboxProvider(Provider[OutgoingEmail]):
    """A provider that keeps what it is given in ``outbox_messages``."""

    name = "outbox"
    channel = Channel.EMAIL
    capabilities = Capabilities(max_batch_size=1000, supports_idempotency_key=True)

    def __init__(self, *, session_factory: async_sessionmaker[AsyncSession]) -> None:
        super().__init__()
        self._sessions = session_factory

    async def send(self, item: OutgoingEmail) -> SendReceipt:
        """Store one email."""
        return _receipt((await self.send_batch([item]))[0])

    async def send_batch(self, items: Sequence[OutgoingEmail]) -> list[SendResult]:
        """Store every email in one transaction; each gets the outbox row's id as receipt."""
        now = utc_now()
        ids = [new_id() for _ in items]
        rows = [
            {
                "id": row_id,
                "created_at": now,
                "organization_id": item.organization_id,
                "delivery_id": item.delivery_id,
                "channel": Channel.EMAIL.value,
                "message_id_header": item.message_id,
                "sender": item.sender,
                "recipient": item.recipient,
                "subject": item.subject,
                "text": item.text,
                "html": item.html,
            }
            for row_id, item in zip(ids, items, strict=True)
        ]
        if rows:
            async with self._sessions() as session, session.begin():
                await session.execute(insert(OutboxMessage), rows)
        return [SendReceipt(provider_message_id=f"obx_{row_id.hex}") for row_id in ids]


def _receipt(result: SendResult) -> SendReceipt:
    if isinstance(result, SendReceipt):
        return result
    raise result
