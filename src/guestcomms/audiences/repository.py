"""Every saved-audience query, always scoped to one organization (selection included)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.audiences import selection
from guestcomms.audiences.models import Audience
from guestcomms.audiences.selection import CompiledAudience
from guestcomms.contacts.models import Contact
from guestcomms.events.models import Event


class AudienceRepository:
    """Reads and writes the audiences of ``organization_id`` and nobody else's."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    @property
    def organization_id(self) -> uuid.UUID:
        """The organization every query is scoped to."""
        return self._org

    async def get(self, audience_id: uuid.UUID) -> Audience | None:
        """The audience, or ``None`` if it does not exist in this organization."""
        return await self._session.scalar(
            select(Audience).where(
                Audience.id == audience_id, Audience.organization_id == self._org
            )
        )

    async def by_name(self, name: str) -> Audience | None:
        """The audience called ``name``, if any."""
        return await self._session.scalar(
            select(Audience).where(Audience.organization_id == self._org, Audience.name == name)
        )

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Audience]:
        """Up to ``limit`` audiences in creation order, after the audience ``after``."""
        stmt = select(Audience).where(Audience.organization_id == self._org)
        if after is not None:
            stmt = stmt.where(Audience.id > after)
        return (await self._session.scalars(stmt.order_by(Audience.id).limit(limit))).all()

    async def event_exists(self, event_id: uuid.UUID) -> bool:
        """Whether ``event_id`` is an event of this organization."""
        found = await self._session.scalar(
            select(Event.id).where(Event.id == event_id, Event.organization_id == self._org)
        )
        return found is not None

    async def add(self, audience: Audience) -> None:
        """Insert a new audience in this organization."""
        audience.organization_id = self._org
        self._session.add(audience)
        await self._session.flush()

    async def delete(self, audience: Audience) -> None:
        """Delete the audience (a campaign naming it keeps its row; the reference becomes null)."""
        await self._session.delete(audience)

    def _own(self, audience: CompiledAudience) -> CompiledAudience:
        if audience.spec.organization_id != self._org:  # a programming error, never input
            raise ValueError("the audience belongs to another organization")
        return audience

    async def count(self, audience: CompiledAudience) -> int:
        """How many members ``audience`` has now."""
        return await selection.count(self._session, self._own(audience))

    async def sample(self, audience: CompiledAudience, *, limit: int) -> list[Contact]:
        """The first ``limit`` members' contacts."""
        return await selection.sample(self._session, self._own(audience), limit=limit)
