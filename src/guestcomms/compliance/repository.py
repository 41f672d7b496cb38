"""Suppression queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.models import Suppression
from guestcomms.db.upsert import insert_ignoring_conflicts
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import new_id


class SuppressionRepository:
    """Adds and looks up the suppressed addresses of ``organization_id``."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def suppress(
        self,
        *,
        channel: str,
        address: str,
        reason: str,
        source: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Suppress ``address`` on ``channel``; return False if it already was."""
        row = {
            "id": new_id(),
            "created_at": utc_now(),
            "organization_id": self._org,
            "channel": channel,
            "address": address.lower() if channel == "email" else address,
            "reason": reason,
            "source": source,
            "detail": detail,
        }
        table = cast(Table, Suppression.__table__)
        return await insert_ignoring_conflicts(self._session, table, [row]) == 1

    async def reasons(self, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """The suppressed ones among ``addresses`` on ``channel``, with their reasons."""
        wanted = list({a.lower() if channel == "email" else a for a in addresses})
        if not wanted:
            return {}
        rows = await self._session.execute(
            select(Suppression.address, Suppression.reason).where(
                Suppression.organization_id == self._org,
                Suppression.channel == channel,
                Suppression.address.in_(wanted),
            )
        )
        return {row.address: row.reason for row in rows}
