"""What a running API process holds: settings, the engine, sessions and the worker wake-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guestcomms.channels.inapp import InboxBroker
from guestcomms.config import Settings


def _no_wake() -> None:
    """Default wake-up: nothing in this process to wake (workers poll)."""


@dataclass(slots=True)
class Runtime:
    """Built by ``create_app``; routes reach it through ``request.app.state.runtime``."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    inbox: InboxBroker = field(default_factory=InboxBroker)
    wake_workers: Callable[[], None] = field(default=_no_wake)
