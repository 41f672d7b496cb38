"""What every CLI command shares: the consoles, one-line failures, settings, running a
coroutine, and the migrated database an offline command works on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
import uvloop
from rich.console import Console

from guestcomms.config import Settings, load_settings
from guestcomms.db import migrate
from guestcomms.errors import GuestcommsError
from guestcomms.logging import configure_logging

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str) -> typer.Exit:
    """Print one line to stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


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
        migrate.upgrade(settings.database_url)
    except Exception as e:  # any failure to reach or migrate the database is fatal here
        raise fail(f"cannot upgrade the database: {type(e).__name__}: {e}") from None
