"""Cross-process worker wake-ups on PostgreSQL: ``NOTIFY`` in the sending transaction (it is
delivered only on commit), ``LISTEN`` on a dedicated connection in each worker. On SQLite
there is one process, and the API wakes the worker in-process instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "guestcomms_wake"
log = structlog.get_logger("guestcomms.notify")


async def notify_workers(session: AsyncSession, *, priority: int | None = None) -> None:
    """Queue a wake-up for every listening worker, sent when the transaction commits.

    ``priority`` (the most urgent of the new work, when known) is the payload, so a worker
    wakes its emergency lane only for an emergency.
    """
    if session.get_bind().dialect.name == "postgresql":
        payload = "" if priority is None else f", '{int(priority)}'"
        await session.execute(text(f"NOTIFY {CHANNEL}{payload}"))


async def listen_for_wakeups(
    database_url: str, on_wake: Callable[[int | None], None]
) -> Callable[[], Awaitable[None]] | None:
    """Call ``on_wake(priority)`` on every wake-up notification (``None`` when it names no
    priority); see :func:`listen`."""
    return await listen(database_url, {CHANNEL: lambda payload: on_wake(_priority(payload))})


def _priority(payload: str) -> int | None:
    return int(payload) if payload.isdigit() else None


async def listen(
    database_url: str, handlers: Mapping[str, Callable[[str], None]]
) -> Callable[[], Awaitable[None]] | None:
    """Call each channel's handler with every notification's payload, on one dedicated
    connection; return a coroutine function that stops listening.

    Returns ``None`` on SQLite, or when the connection cannot be made (callers then poll or
    miss cross-process announcements, and say so in the log).
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

    for channel, handler in handlers.items():
        await connection.add_listener(channel, _adapt(handler))

    async def stop() -> None:
        await connection.close()

    return stop


def _adapt(handler: Callable[[str], None]) -> Callable[..., None]:
    def callback(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        handler(payload)

    return callback
