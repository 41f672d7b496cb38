"""Every saved-audience query, always scoped to one organization (selection included)."""

from __future__ import annotations

from sqlalchemy import select

from guestcomms.audiences import selection
from guestcomms.audiences.models import Audience
from guestcomms.audiences.selection import CompiledAudience
from guestcomms.contacts.models import Contact
from guestcomms.db.repository import TenantRepository


class AudienceRepository(TenantRepository[Audience]):
    """Reads and writes the audiences of ``organization_id`` and nobody else's (``get`` and
    ``page`` come from ``TenantRepository``)."""

    model = Audience

    async def by_name(self, name: str) -> Audience | None:
        """The audience called ``name``, if any."""
        return await self._session.scalar(
            select(Audience).where(Audience.organization_id == self._org, Audience.name == name)
        )

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
