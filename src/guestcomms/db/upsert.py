"""``INSERT ... ON CONFLICT DO NOTHING`` for either dialect (both speak it, with their own
SQLAlchemy constructs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_ignoring_conflicts(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]]
) -> int:
    """Insert ``rows``, skipping any that violate a unique constraint; return how many went in."""
    if not rows:
        return 0
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(rows).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
