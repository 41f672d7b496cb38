"""Shared fixtures: a migrated database per test on SQLite and on PostgreSQL.

PostgreSQL tests skip when no server answers on 127.0.0.1:5432, unless
``GUESTCOMMS_REQUIRE_SERVICES=1`` (CI), where its absence is a failure. Each test gets a fresh
database: on PostgreSQL cloned from a template migrated once per session, on SQLite copied
from a file migrated once per session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from guestcomms.channels.simulator import ProviderSimulator
from guestcomms.db.migrate import upgrade
from guestcomms.logging import configure_logging

PG_HOST = os.environ.get("GUESTCOMMS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GUESTCOMMS_TEST_PG_PORT", "5432"))
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
REQUIRE_SERVICES = os.environ.get("GUESTCOMMS_REQUIRE_SERVICES") == "1"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pg_url(database: str) -> str:
    """The SQLAlchemy URL of a test database on the local PostgreSQL server."""
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}"


def require_postgres() -> None:
    """Skip (or fail under GUESTCOMMS_REQUIRE_SERVICES=1) without a PostgreSQL server."""
    if _port_open(PG_HOST, PG_PORT):
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"PostgreSQL is required but not reachable at {PG_HOST}:{PG_PORT}")
    pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}")


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head once per session, cloned by each test."""
    require_postgres()
    name = f"gc_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        upgrade(pg_url(name))
        yield name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite database for one test."""
    path = tmp_path / "guestcomms.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def postgres_url(pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    name = f"gc_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield pg_url(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on a fresh SQLite and a fresh PostgreSQL database."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(autouse=True, scope="session")
def _plain_logs() -> None:
    """JSON log lines in tests: readable in failure output, no terminal rendering."""
    configure_logging(level="WARNING", json=True)


@pytest.fixture
async def simulator() -> AsyncIterator[ProviderSimulator]:
    """The provider simulator on a free port, stopped after the test."""
    async with ProviderSimulator() as running:
        yield running
