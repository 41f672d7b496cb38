"""Provider account and channel route queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.providers.models import ChannelRoute, ProviderAccount


class ProviderRepository:
    """Reads and writes the provider accounts of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def all(self) -> Sequence[ProviderAccount]:
        """Every account, by channel then priority."""
        return (
            await self._session.scalars(
                select(ProviderAccount)
                .where(ProviderAccount.organization_id == self._org)
                .order_by(ProviderAccount.channel, ProviderAccount.priority, ProviderAccount.name)
            )
        ).all()

    async def get(self, account_id: uuid.UUID) -> ProviderAccount | None:
        """One account, or ``None``."""
        return await self._session.scalar(
            select(ProviderAccount).where(
                ProviderAccount.organization_id == self._org, ProviderAccount.id == account_id
            )
        )

    async def by_name(self, name: str) -> ProviderAccount | None:
        """The account called ``name``, or ``None``."""
        return await self._session.scalar(
            select(ProviderAccount).where(
                ProviderAccount.organization_id == self._org, ProviderAccount.name == name
            )
        )

    async def add(self, account: ProviderAccount) -> None:
        """Insert an account."""
        account.organization_id = self._org
        self._session.add(account)
        await self._session.flush()

    async def delete(self, account: ProviderAccount) -> None:
        """Delete an account."""
        await self._session.delete(account)

    async def route(self, channel: str) -> ChannelRoute | None:
        """The channel's routing row, or ``None`` (the default strategy)."""
        return await self._session.scalar(
            select(ChannelRoute).where(
                ChannelRoute.organization_id == self._org, ChannelRoute.channel == channel
            )
        )

    async def add_route(self, route: ChannelRoute) -> None:
        """Insert a routing row."""
        route.organization_id = self._org
        self._session.add(route)
        await self._session.flush()
