"""Queries for applying inbound provider events, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.contacts.models import Contact
from guestcomms.db.queue import insert_events
from guestcomms.db.upsert import insert_ignoring_conflicts
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import new_id
from guestcomms.domain.sms_keywords import default_help_text
from guestcomms.inbound.models import InboundEventRecord
from guestcomms.messages.models import Delivery
from guestcomms.organizations.models import Organization
from guestcomms.providers.models import ProviderAccount


class InboundRepository:
    """Finds deliveries by provider ids and records applied events for ``organization_id``."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def first_time(
        self, *, provider: str, event_id: str, type_: str, raw: dict[str, Any]
    ) -> bool:
        """Record the event; False when it was recorded before (a replayed webhook)."""
        row = {
            "id": new_id(),
            "created_at": utc_now(),
            "organization_id": self._org,
            "provider": provider,
            "event_id": event_id,
            "type": type_,
            "raw": raw,
        }
        table = cast(Table, InboundEventRecord.__table__)
        return await insert_ignoring_conflicts(self._session, table, [row]) == 1

    async def delivery(
        self, *, delivery_id: uuid.UUID | None, message_ids: Sequence[str]
    ) -> Delivery | None:
        """The delivery by our id, else by the provider's message id; locked for update."""
        stmt = select(Delivery).where(Delivery.organization_id == self._org)
        if delivery_id is not None:
            stmt = stmt.where(Delivery.id == delivery_id)
        elif message_ids:
            stmt = stmt.where(Delivery.provider_message_id.in_(list(message_ids)))
        else:
            return None
        if self._session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt.limit(1))

    async def add_event(
        self, delivery: Delivery, type_: str, detail: dict[str, Any], *, now: datetime
    ) -> None:
        """Append an event to the delivery's history."""
        await insert_events(self._session, [(self._org, delivery.id, type_, detail)], now=now)

    async def contact_address(self, contact_id: uuid.UUID, channel: str) -> str | None:
        """The contact's address on ``channel`` (email or phone)."""
        column = Contact.email if channel == "email" else Contact.phone
        return await self._session.scalar(
            select(column).where(Contact.organization_id == self._org, Contact.id == contact_id)
        )

    async def sms_help_text(self) -> str:
        """The organization's ``sms_help_text`` setting, else a default naming it."""
        row = (
            await self._session.execute(
                select(Organization.name, Organization.settings).where(Organization.id == self._org)
            )
        ).one()
        text = (row.settings or {}).get("sms_help_text")
        return str(text) if text else default_help_text(row.name)

    async def webhook_secret(self, provider: str) -> str | None:
        """The secret that signs ``provider``'s webhooks for this organization, if configured.

        It is the ``webhook_secret`` credential of the organization's enabled account of that
        kind (for Twilio, its ``auth_token`` when no separate secret is set).
        """
        accounts = await self._session.scalars(
            select(ProviderAccount).where(
                ProviderAccount.organization_id == self._org,
                ProviderAccount.kind.in_(_KINDS.get(provider, (provider,))),
                ProviderAccount.enabled.is_(True),
            )
        )
        for account in accounts:
            secret = account.credentials.get("webhook_secret") or account.credentials.get(
                "auth_token"
            )
            if secret:
                return str(secret)
        return None


# the provider account kinds whose webhooks an inbound parser reads
_KINDS: dict[str, tuple[str, ...]] = {
    "twilio": ("twilio_sms", "twilio_voice"),
    "vonage": ("vonage_sms",),
}
