"""Organization and API key queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.organizations.models import ApiKey, Organization


class OrganizationRepository:
    """Tenants are the one thing not scoped by tenant: this repository is for the CLI and auth."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def by_name(self, name: str) -> Organization | None:
        """The organization called ``name``, if any."""
        return await self._session.scalar(select(Organization).where(Organization.name == name))

    async def add(self, organization: Organization) -> Organization:
        """Insert an organization."""
        self._session.add(organization)
        await self._session.flush()
        return organization

    async def add_key(self, key: ApiKey) -> ApiKey:
        """Insert an API key."""
        self._session.add(key)
        await self._session.flush()
        return key

    async def key_by_prefix(self, prefix: str) -> ApiKey | None:
        """The key with this visible prefix, if any."""
        return await self._session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))

    async def keys_of(
        self, organization_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[ApiKey]:
        """A page of the organization's keys, revoked ones included, oldest first."""
        query = select(ApiKey).where(ApiKey.organization_id == organization_id)
        if after is not None:
            query = query.where(ApiKey.id > after)
        rows = await self._session.scalars(query.order_by(ApiKey.id).limit(limit))
        return rows.all()

    async def key_of(self, organization_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        """The organization's key ``key_id``; ``None`` if it is another organization's."""
        return await self._session.scalar(
            select(ApiKey).where(ApiKey.organization_id == organization_id, ApiKey.id == key_id)
        )
