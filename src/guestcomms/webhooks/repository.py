"""Webhook endpoint queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.webhooks.models import WebhookEndpoint


class WebhookEndpointRepository:
    """Reads and writes the webhook endpoints of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def all(self) -> Sequence[WebhookEndpoint]:
        """Every endpoint, oldest first."""
        return (
            await self._session.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.organization_id == self._org)
                .order_by(WebhookEndpoint.id)
            )
        ).all()

    async def get(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        """One endpoint, or ``None``."""
        return await self._session.scalar(
            select(WebhookEndpoint).where(
                WebhookEndpoint.organization_id == self._org, WebhookEndpoint.id == endpoint_id
            )
        )

    async def by_urls(self, urls: Iterable[str]) -> dict[str, WebhookEndpoint]:
        """The endpoints among ``urls``, keyed by URL."""
        wanted = list(set(urls))
        if not wanted:
            return {}
        rows = await self._session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.organization_id == self._org, WebhookEndpoint.url.in_(wanted)
            )
        )
        return {e.url: e for e in rows}

    async def add(self, endpoint: WebhookEndpoint) -> None:
        """Insert an endpoint."""
        endpoint.organization_id = self._org
        self._session.add(endpoint)
        await self._session.flush()

    async def delete(self, endpoint: WebhookEndpoint) -> None:
        """Delete an endpoint."""
        await self._session.delete(endpoint)
