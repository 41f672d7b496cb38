"""Bulk writes for either dialect: ``INSERT ... ON CONFLICT DO NOTHING`` and ``... DO UPDATE``
(both speak it, with their own SQLAlchemy constructs), multi-row inserts, and the plan setting
bulk reads need on PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Row, Table, insert, text
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


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str],
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert ``rows``; a row that collides with an existing one on the unique columns
    ``conflict`` sets that row's ``update`` columns instead. Returns the ``returning`` columns
    of every row written (inserted or updated), in no set order.

    Rows must all have the same keys, and no two may collide with each other.
    """
    if not rows:
        return []
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = module.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(conflict), set_={name: stmt.excluded[name] for name in update}
    )
    result = await session.execute(
        stmt.returning(*(table.c[name] for name in returning or table.primary_key.columns.keys())),
        rows,
    )
    return list(result.all()) if returning else []


async def insert_many(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in multi-row statements.

    Asking for the primary key back is what makes SQLAlchemy batch an executemany into
    multi-row ``INSERT ... VALUES`` ("insertmanyvalues", compiled once); without RETURNING,
    asyncpg sends one execution per row, several times slower with foreign keys to check.
    Building one ``VALUES`` list of a thousand rows as an expression instead costs about half
    a second to compile. ``upsert`` is sent the same way.
    """
    if rows:
        await session.execute(insert(table).returning(*table.primary_key.columns), rows)


@contextlib.asynccontextmanager
async def planned_for_values(session: AsyncSession) -> AsyncIterator[None]:
    """On PostgreSQL, plan the statements run inside with their actual parameters (no-op on
    SQLite). For bulk look-ups like ``WHERE email IN (1,000 parameters)``.

    asyncpg prepares statements, and after five executions PostgreSQL may switch to a generic
    plan. Against a table that grew inside the transaction (no statistics yet) the generic
    plan scans the table and compares each row with the list one by one: an import of
    50,000 rows then took minutes instead of seconds. A custom plan sees the values, hashes
    the list, and picks the index. Only inside: re-planning every multi-row INSERT of a
    thousand rows would make the writes four times slower.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    yield
    # not in a finally: after an error the transaction is rolled back, and the setting with it
    if postgres:
        await session.execute(text("SET LOCAL plan_cache_mode = DEFAULT"))
