"""Suppression queries, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.hashing import address_hash
from guestcomms.compliance.models import Suppression
from guestcomms.db.upsert import insert_ignoring_conflicts
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import new_id


class SuppressionRepository:
    """Adds and looks up the suppressed addresses of ``organization_id``. With ``hash_key``
    (``compliance.hashing.hash_key``) a look-up also matches erased contacts' suppressions,
    which keep only the keyed hash of the address."""

    def __init__(
        self, session: AsyncSession, organization_id: uuid.UUID, *, hash_key: bytes | None = None
    ) -> None:
        self._session = session
        self._org = organization_id
        self._hash_key = hash_key

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
        key = self._hash_key
        hashes = {address_hash(key, channel, a): a for a in wanted} if key else {}
        match: ColumnElement[bool] = Suppression.address.in_(wanted)
        if hashes:  # one query for both: the plaintext address and the erased one's hash
            match = or_(match, Suppression.address_hash.in_(list(hashes)))
        rows = await self._session.execute(
            select(Suppression.address, Suppression.address_hash, Suppression.reason).where(
                Suppression.organization_id == self._org, Suppression.channel == channel, match
            )
        )
        found: dict[str, str] = {}
        present = set(wanted)
        for row in rows:
            if row.address in present:
                found[row.address] = row.reason
            elif row.address_hash in hashes:
                found[hashes[row.address_hash]] = row.reason
        return found

    async def lift(self, *, channel: str, address: str, reasons: Iterable[str]) -> int:
        """Delete the suppressions of ``address`` on ``channel`` that have one of ``reasons``
        (an SMS START lifts ``stop`` and ``opt_out``, never a manual one); return how many."""
        result = await self._session.execute(
            delete(Suppression).where(
                Suppression.organization_id == self._org,
                Suppression.channel == channel,
                Suppression.address == (address.lower() if channel == "email" else address),
                Suppression.reason.in_(list(reasons)),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
