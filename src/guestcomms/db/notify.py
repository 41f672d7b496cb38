"""Cross-process worker wake-ups on PostgreSQL: ``NOTIFY`` in the sending transaction (it is
delivered only on commit), ``LISTEN`` on a dedicated connection in each worker. On SQLite
there is one process, and the API wakes the worker in-process instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "guestcomms_wake"
log = structlog.get_logger("guestcomms.notify")


async def notify_workers(session: AsyncSession) -> None:
    """Queue a wake-up for every listening worker, sent when the transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"NOTIFY {CHANNEL}"))


async def listen_for_wakeups(
    database_url: str, on_wake: Callable[[], None]
) -> Callable[[], Awaitable[None]] | None:
    """Call ``on_wake`` on every notification; return a coroutine function that stops it.

    Returns ``None`` on SQLite, or when the connection cannot be made (workers then poll).
    """
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as e:
        log.warning("notify.listen_failed", error=str(e))
        return None

    def _callback(*_: Any) -> None:
        on_wake()

    await connection.add_listener(CHANNEL, _callback)

    async def stop() -> None:
        await connection.close()

    return stop
