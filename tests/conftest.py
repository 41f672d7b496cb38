"""Shared fixtures: a migrated database per test on SQLite and on PostgreSQL.

PostgreSQL tests skip when no server answers on 127.0.0.1:5432, unless
``GUESTCOMMS_REQUIRE_SERVICES=1`` (CI), where its absence is a failure. Each test gets a fresh
database: on PostgreSQL cloned from a template migrated once per session, on SQLite copied
from a file migrated once per session.

Under pytest-xdist (``make test`` runs two workers) each worker is a process with its own
session: its own templates, temporary directories and module state; databases, Redis key
prefixes and TCP ports (``tests.smtp_server.free_port``) are unique per test. Tests marked
``alone`` measure real time (rates, latencies): they run while no other test runs.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from guestcomms.channels.simulator import ProviderSimulator
from guestcomms.db.migrate import upgrade
from guestcomms.logging import configure_logging

# pytest-xdist starts its workers with COLUMNS=80 and LINES=24 in their environment, where a
# serial run has neither. Rich consoles made at import (guestcomms.commands.support) would
# freeze that width and ignore the COLUMNS a test sets; a worker must see what a serial run sees.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

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


# -- tests that must run alone under pytest-xdist ---------------------------------------------
#
# A test marked ``alone`` asserts on real time (a rate per second, a latency); CPU taken by a
# test on another worker would delay its event loop and skew what it measures. All workers
# share one lock file, created by the controller: byte 0 is a turnstile, byte 1 is read-shared
# by every running test and taken exclusively by an ``alone`` test. Holding the turnstile while
# it waits, an ``alone`` test keeps new tests from starting, so it is not starved. The lock is
# taken before pytest-timeout's timer starts, so waiting for it does not count against a
# test's timeout. Without xdist there is nothing to wait for.

_LOCK_KEY = "guestcomms_alone_lock"
_TURNSTILE, _RUNNING = 0, 1
_lock_path = pytest.StashKey[str]()
_lock_fd = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    """On the xdist controller, make the lock file the workers share."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    fd, path = tempfile.mkstemp(prefix="guestcomms-tests-", suffix=".lock")
    os.close(fd)
    config.stash[_lock_path] = path


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand the lock file's path to each xdist worker."""
    path = node.config.stash.get(_lock_path, None)
    if path is not None:
        node.workerinput[_LOCK_KEY] = path


def pytest_unconfigure(config: pytest.Config) -> None:
    """On the controller, remove the lock file."""
    path = config.stash.get(_lock_path, None)
    if path is not None and not hasattr(config, "workerinput"):
        Path(path).unlink(missing_ok=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, ``alone`` tests first: waiting for the other worker's test to end is
    short at the start of the run, and could take minutes behind one of the longest tests."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("alone") is None)


def _worker_lock(config: pytest.Config) -> int | None:
    """This worker's descriptor of the shared lock file; None outside xdist."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None or _LOCK_KEY not in workerinput:
        return None
    if _lock_fd not in config.stash:
        # one descriptor for the worker's life: closing any descriptor of the file would
        # release the process's record locks
        config.stash[_lock_fd] = os.open(workerinput[_LOCK_KEY], os.O_RDWR)
    return config.stash[_lock_fd]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Run an ``alone`` test while no other worker runs a test; others share the lock."""
    fd = _worker_lock(item.config)
    if fd is None:
        return (yield)
    alone = item.get_closest_marker("alone") is not None
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, _TURNSTILE)
    fcntl.lockf(fd, fcntl.LOCK_EX if alone else fcntl.LOCK_SH, 1, _RUNNING)
    if not alone:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _TURNSTILE)
    try:
        return (yield)
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _RUNNING)
        if alone:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, _TURNSTILE)
