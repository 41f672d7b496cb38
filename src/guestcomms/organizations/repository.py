"""Organization and API key queries."""

from __future__ import annotations

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
