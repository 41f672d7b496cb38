"""The database of one run, and a read-only probe of its queue.

``sqlite_store`` gives a file in a temporary directory; ``postgres_store`` creates a fresh
``gc_bench_<random>`` database from the admin connection and drops it afterwards, even when
the run fails. The probe reads with its own plain connection (stdlib ``sqlite3`` read-only,
or asyncpg), never the project's engine: on SQLite that engine begins every transaction
with ``BEGIN IMMEDIATE``, and a poller holding the write lock would slow the worker it
measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DROP_TIMEOUT_SECONDS = 30.0

COUNTS_SQL = "SELECT status, count(*) FROM deliveries GROUP BY status"
# Every outcome of one recorded batch carries the same timestamp: one row per batch.
SENT_BATCHES_SQL = (
    "SELECT created_at, count(*) FROM delivery_events WHERE type = 'sent' "
    "GROUP BY created_at ORDER BY created_at"
)
LISTENERS_SQL = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
)


def _aware(value: Any) -> datetime:
    # SQLite keeps naive UTC text; PostgreSQL hands back an aware datetime.
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(parsed, datetime)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class Store(ABC):
    """A database for one run: its URL for the server, and read-only queries for the bench."""

    label: str
    url: str

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Deliveries by status (the bench database holds one message)."""

    @abstractmethod
    async def sent_batches(self) -> list[tuple[datetime, int]]:
        """``(recorded at, deliveries)`` per recorded batch of sent outcomes, oldest first."""

    async def worker_listening(self) -> bool:
        """Whether a worker has its wake-up listener up (PostgreSQL only; else true)."""
        return True

    @abstractmethod
    async def close(self) -> None:
        """Close the probe's connection (the store can then be copied)."""


class SqliteStore(Store):
    """A SQLite file; the probe opens it read-only once the server has created it."""

    label = "SQLite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite+aiosqlite:///{path}"
        self._conn: sqlite3.Connection | None = None

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        if self._conn is None:
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30
            )
        return self._conn.execute(sql).fetchall()

    async def counts(self) -> dict[str, int]:
        """Deliveries by status."""
        rows = await asyncio.to_thread(self._query, COUNTS_SQL)
        return {str(status): int(n) for status, n in rows}

    async def sent_batches(self) -> list[tuple[datetime, int]]:
        """Sent outcomes grouped by the batch that recorded them."""
        rows = await asyncio.to_thread(self._query, SENT_BATCHES_SQL)
        return [(_aware(at), int(n)) for at, n in rows]

    async def close(self) -> None:
        """Close the read-only connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresStore(Store):
    """A database created for this run; the probe connects to it directly."""

    label = "PostgreSQL"

    def __init__(self, name: str, url: str, dsn: str) -> None:
        self.name = name
        self.url = url
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await asyncpg.connect(self._dsn)
        return self._conn

    async def counts(self) -> dict[str, int]:
        """Deliveries by status."""
        rows = await (await self._connection()).fetch(COUNTS_SQL)
        return {str(r[0]): int(r[1]) for r in rows}

    async def sent_batches(self) -> list[tuple[datetime, int]]:
        """Sent outcomes grouped by the batch that recorded them."""
        rows = await (await self._connection()).fetch(SENT_BATCHES_SQL)
        return [(_aware(r[0]), int(r[1])) for r in rows]

    async def worker_listening(self) -> bool:
        """Whether a worker has run ``LISTEN`` on this database."""
        count = await (await self._connection()).fetchval(LISTENERS_SQL)
        return bool(count)

    async def close(self) -> None:
        """Close the probe's connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def _copy_sqlite(source: Path, target: Path) -> None:
    # The backup API copies a consistent snapshot, whatever is still in the WAL.
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


@contextlib.asynccontextmanager
async def sqlite_store(
    directory: Path, *, copy_of: SqliteStore | None = None
) -> AsyncIterator[SqliteStore]:
    """A SQLite file in ``directory``: new (created by the server), or a copy of ``copy_of``."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    store = SqliteStore(directory / "bench.db")
    if copy_of is not None:
        await copy_of.close()
        await asyncio.to_thread(_copy_sqlite, copy_of.path, store.path)
    try:
        yield store
    finally:
        await store.close()


async def postgres_reachable(admin_dsn: str) -> str | None:
    """``None`` if the admin database answers, else why not (one line)."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(admin_dsn), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        return f"{type(e).__name__}: {e}"
    await conn.close()
    return None


@contextlib.asynccontextmanager
async def postgres_store(
    admin_dsn: str = DEFAULT_ADMIN_DSN, *, copy_of: PostgresStore | None = None
) -> AsyncIterator[PostgresStore]:
    """A fresh ``gc_bench_<random>`` database (empty, or a copy of ``copy_of``), dropped on
    exit with whatever is still connected to it."""
    name = f"gc_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        if copy_of is None:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            await copy_of.close()  # a template database must have no other connection
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{copy_of.name}"')
        base = make_url(admin_dsn).set(database=name)
        dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
        url = base.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        store = PostgresStore(name, url, dsn)
        try:
            yield store
        finally:
            await store.close()
            await asyncio.wait_for(
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
                timeout=DROP_TIMEOUT_SECONDS,
            )
    finally:
        await admin.close()
