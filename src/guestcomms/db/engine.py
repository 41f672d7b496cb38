"""Engine and session factory for SQLite (embedded) and PostgreSQL (production).

SQLite gets WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction: a transaction
that reads and then writes can otherwise fail with SQLITE_BUSY when another connection wrote
in between, instead of waiting its turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from guestcomms.config import Settings
from guestcomms.security.protection import FieldProtection, bind

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _prepare_sqlite_path(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: AsyncEngine, *, secure_delete: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if secure_delete:
            # with encryption at rest, a value deleted or re-encrypted must not linger in free
            # pages of the file in its old form
            cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(
    database_url: str, *, protection: FieldProtection | None = None, echo: bool = False
) -> AsyncEngine:
    """Create the async engine for ``database_url``, configured for its dialect, protecting
    personal fields with ``protection`` (``FieldProtection.from_settings``; without one,
    hashes use the development secret and nothing is encrypted)."""
    engine = _create_engine(
        database_url, echo=echo, secure_delete=protection is not None and protection.encrypting
    )
    if protection is not None:
        bind(engine, protection)
    return engine


def engine_for(settings: Settings) -> AsyncEngine:
    """The engine for ``settings.database_url``, protecting fields as ``settings`` say."""
    return create_engine(settings.database_url, protection=FieldProtection.from_settings(settings))


def _create_engine(database_url: str, *, echo: bool, secure_delete: bool) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        _prepare_sqlite_path(database_url)
        engine = create_async_engine(database_url, echo=echo, pool_size=8, max_overflow=8)
        _configure_sqlite(engine, secure_delete=secure_delete)
        return engine
    return create_async_engine(
        database_url,
        echo=echo,
        pool_size=20,
        max_overflow=20,
        pool_pre_ping=True,
        # JIT compiling a plan costs ~20 ms here, paid whenever an estimate crosses
        # jit_above_cost (the queue's claim does at large batch sizes): never worth it for
        # statements that run in a few milliseconds.
        connect_args={"server_settings": {"jit": "off"}},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (no implicit refresh I/O)."""
    return async_sessionmaker(engine, expire_on_commit=False)
