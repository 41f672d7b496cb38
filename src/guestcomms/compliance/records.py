"""Consent and suppression records for the API and the unsubscribe pages, scoped to one
organization. (Suppression look-ups for sending live in ``repository.py``.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.hashing import address_hash
from guestcomms.compliance.models import Consent, Suppression
from guestcomms.contacts.models import Contact
from guestcomms.security.protection import protection_of
from guestcomms.templates.models import Template


class ConsentRepository:
    """Appends consent versions and reads a contact's history in ``organization_id``."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def record(
        self,
        *,
        contact_id: uuid.UUID,
        channel: str,
        purpose: str,
        granted: bool,
        source: str,
        proof: dict[str, Any] | None = None,
    ) -> Consent:
        """Add the next version for (contact, channel, purpose); earlier ones are kept."""
        newest = await self._session.scalar(
            select(func.max(Consent.version)).where(
                Consent.organization_id == self._org,
                Consent.contact_id == contact_id,
                Consent.channel == channel,
                Consent.purpose == purpose,
            )
        )
        consent = Consent(
            organization_id=self._org,
            contact_id=contact_id,
            channel=channel,
            purpose=purpose,
            granted=granted,
            version=(newest or 0) + 1,
            source=source,
            proof=proof,
        )
        self._session.add(consent)
        await self._session.flush()
        return consent

    async def history(self, contact_id: uuid.UUID) -> Sequence[Consent]:
        """Every version for the contact, oldest first."""
        rows = await self._session.scalars(
            select(Consent)
            .where(Consent.organization_id == self._org, Consent.contact_id == contact_id)
            .order_by(Consent.channel, Consent.purpose, Consent.version)
        )
        return rows.all()

    async def contact(self, contact_id: uuid.UUID) -> Contact | None:
        """The contact, if it belongs to this organization."""
        return await self._session.scalar(
            select(Contact).where(Contact.organization_id == self._org, Contact.id == contact_id)
        )

    async def topics(self) -> list[str]:
        """The organization's marketing topics: its templates' marketing categories."""
        rows = await self._session.scalars(
            select(Template.category)
            .where(
                Template.organization_id == self._org,
                func.lower(Template.category).like("marketing%"),
            )
            .distinct()
        )
        return sorted(c for c in rows if c)


class SuppressionListRepository:
    """Lists, reads and removes the suppressions of ``organization_id``."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def page(
        self, *, after: uuid.UUID | None, limit: int, channel: str | None = None
    ) -> Sequence[Suppression]:
        """Suppressions in creation order after ``after``."""
        query = select(Suppression).where(Suppression.organization_id == self._org)
        if after is not None:
            query = query.where(Suppression.id > after)
        if channel is not None:
            query = query.where(Suppression.channel == channel)
        rows = await self._session.scalars(query.order_by(Suppression.id).limit(limit))
        return rows.all()

    async def get(self, suppression_id: uuid.UUID) -> Suppression | None:
        """One suppression, if it belongs to this organization."""
        return await self._session.scalar(
            select(Suppression).where(
                Suppression.organization_id == self._org, Suppression.id == suppression_id
            )
        )

    async def find(self, channel: str, address: str) -> Suppression | None:
        """The suppression of ``address`` on ``channel``, if any."""
        digest = address_hash(protection_of(self._session).hash_key, channel, address)
        return await self._session.scalar(
            select(Suppression).where(
                Suppression.organization_id == self._org,
                Suppression.channel == channel,
                Suppression.address_hash == digest,
            )
        )

    async def remove(self, suppression_id: uuid.UUID) -> bool:
        """Delete one suppression; False if there was none."""
        result = await self._session.execute(
            delete(Suppression).where(
                Suppression.organization_id == self._org, Suppression.id == suppression_id
            )
        )
        return bool(getattr(result, "rowcount", 0))
