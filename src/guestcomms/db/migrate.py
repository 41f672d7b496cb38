"""Run Alembic migrations from code (``guestcomms db upgrade``, ``serve`` on start, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, *, secret_key: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations and ``database_url``;
    ``secret_key`` keys the address hashes a migration computes (the development one when
    not given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    config.attributes["secret_key"] = secret_key
    return config


def upgrade(database_url: str, revision: str = "head", *, secret_key: str | None = None) -> None:
    """Upgrade the database at ``database_url`` to ``revision`` (blocking)."""
    command.upgrade(alembic_config(database_url, secret_key=secret_key), revision)


async def upgrade_async(
    database_url: str, revision: str = "head", *, secret_key: str | None = None
) -> None:
    """Run :func:`upgrade` in a thread, for callers already inside an event loop."""
    await asyncio.to_thread(upgrade, database_url, revision, secret_key=secret_key)
