"""Suppression queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.hashing import address_hash, normalise_address
from guestcomms.compliance.models import Suppression
from guestcomms.db.upsert import insert_ignoring_conflicts
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import new_id
from guestcomms.security.protection import protection_of


class SuppressionRepository:
    """Adds and looks up the suppressed addresses of ``organization_id``.

    Look-ups go through the keyed hash of the address (``suppressions.address_hash``), never
    the address itself, which may be encrypted; erased contacts' suppressions keep only the
    hash, so they match too."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id
        self._protection = protection_of(session)

    def digest(self, channel: str, address: str) -> str:
        """The keyed hash a suppression of ``address`` on ``channel`` is found by."""
        return address_hash(self._protection.hash_key, channel, address)

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
            "address": normalise_address(channel, address),
            "address_hash": self.digest(channel, address),
            "reason": reason,
            "source": source,
            "detail": detail,
        }
        table = cast(Table, Suppression.__table__)
        return await insert_ignoring_conflicts(self._session, table, [row]) == 1

    async def reasons(self, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """The suppressed ones among ``addresses`` on ``channel``, with their reasons."""
        hashes = {self.digest(channel, a): a for a in set(addresses)}
        if not hashes:
            return {}
        rows = await self._session.execute(
            select(Suppression.address_hash, Suppression.reason).where(
                Suppression.organization_id == self._org,
                Suppression.channel == channel,
                Suppression.address_hash.in_(list(hashes)),
            )
        )
        return {hashes[row.address_hash]: row.reason for row in rows}

    async def lift(self, *, channel: str, address: str, reasons: Iterable[str]) -> int:
        """Delete the suppressions of ``address`` on ``channel`` that have one of ``reasons``
        (an SMS START lifts ``stop`` and ``opt_out``, never a manual one); return how many."""
        result = await self._session.execute(
            delete(Suppression).where(
                Suppression.organization_id == self._org,
                Suppression.channel == channel,
                Suppression.address_hash == self.digest(channel, address),
                Suppression.reason.in_(list(reasons)),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
