"""The common part of a repository scoped to one organization: its session, its
organization, and the get, page and flush that each such repository writes the same way.

Subclasses name their main table in ``model`` and add their own queries, always filtered by
``self._org``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped


class TenantRow(Protocol):
    """A mapped row that belongs to one organization."""

    id: Mapped[uuid.UUID]
    organization_id: Mapped[uuid.UUID]


M = TypeVar("M", bound=TenantRow)


class TenantRepository(Generic[M]):
    """Reads and writes the ``model`` rows of ``organization_id`` and nobody else's."""

    model: type[M]  # set by each subclass, on the class

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    @property
    def session(self) -> AsyncSession:
        """The session (and so the transaction) this repository works in."""
        return self._session

    @property
    def organization_id(self) -> uuid.UUID:
        """The organization every query is scoped to."""
        return self._org

    async def get(self, row_id: uuid.UUID) -> M | None:
        """The row, or ``None`` if it does not exist in this organization."""
        model = self.model
        return await self._session.scalar(
            select(model).where(model.id == row_id, model.organization_id == self._org)
        )

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[M]:
        """Up to ``limit`` rows in creation order (ids are UUIDv7), after the row ``after``."""
        model = self.model
        stmt = select(model).where(model.organization_id == self._org)
        if after is not None:
            stmt = stmt.where(model.id > after)
        return (await self._session.scalars(stmt.order_by(model.id).limit(limit))).all()

    async def flush(self) -> None:
        """Send staged changes to the database (to surface constraint errors early)."""
        await self._session.flush()
