"""What every CLI command shares: the consoles, one-line failures, settings, running a
coroutine, the migrated database an offline command works on, and one transaction on it
(with the organization named by ``--org``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import typer
import uvloop
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.config import Settings, load_settings
from guestcomms.db import migrate
from guestcomms.db.engine import create_session_factory, engine_for
from guestcomms.errors import GuestcommsError, NotFoundError
from guestcomms.logging import configure_logging
from guestcomms.organizations.models import Organization
from guestcomms.organizations.repository import OrganizationRepository

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str) -> typer.Exit:
    """Print one line to stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def pairs_or_exit(
    values: list[str] | None, *, option: str, shape: str = "KEY=VALUE"
) -> dict[str, str]:
    """A repeated ``option`` of ``NAME=VALUE`` items as a dict (a later name wins), or a
    one-line error naming the option and the expected ``shape``, and exit 1."""
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise fail(f"{option} takes {shape}, got {value!r}")
        pairs[name] = text
    return pairs


def settings_or_exit() -> Settings:
    """The settings, or a one-line error and exit 1."""
    try:
        settings = load_settings()
    except GuestcommsError as e:
        raise fail(str(e)) from None
    configure_logging(level=settings.log_level, json=settings.log_json)
    return settings


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on uvloop (as uvicorn runs the API), turning our errors into one line
    and exit 1."""
    try:
        return uvloop.run(factory())  # type: ignore[arg-type]
    except GuestcommsError as e:
        raise fail(str(e)) from None


def upgrade_or_exit(settings: Settings) -> None:
    """Bring the schema up to date, or a one-line error and exit 1."""
    try:
        migrate.upgrade(settings.database_url, secret_key=settings.secret_key.get_secret_value())
    except Exception as e:  # any failure to reach or migrate the database is fatal here
        raise fail(f"cannot upgrade the database: {type(e).__name__}: {e}") from None


@asynccontextmanager
async def database_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session in one transaction on a fresh engine, committed when the block ends (rolled
    back if it raises); the engine is disposed of either way. Run it inside ``run_async``."""
    engine = engine_for(settings)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def organization_named(session: AsyncSession, name: str) -> Organization:
    """The organization called ``name``; raises ``NotFoundError`` ("no organization named
    ...") otherwise, which ``run_async`` prints as one line with exit 1."""
    organization = await OrganizationRepository(session).by_name(name)
    if organization is None:
        raise NotFoundError(f"no organization named {name!r}")
    return organization


@asynccontextmanager
async def organization_session(
    settings: Settings, org_name: str
) -> AsyncIterator[tuple[AsyncSession, Organization]]:
    """``database_session`` and the organization named ``org_name`` in it (``--org``);
    raises ``NotFoundError`` as ``organization_named`` does."""
    async with database_session(settings) as session:
        yield session, await organization_named(session, org_name)
