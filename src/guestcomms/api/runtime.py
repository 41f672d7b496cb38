"""What a running API process holds: settings, the engine, sessions and the worker wake-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guestcomms.api.ratelimit import ApiRateLimiter
from guestcomms.channels.inapp import InboxBroker
from guestcomms.channels.urgency import Hold
from guestcomms.config import Settings
from guestcomms.engine.metrics import Metrics


class WakeWorkers(Protocol):
    """Wakes the workers after a commit; ``priority`` (when known) lets an emergency wake
    the emergency lane at once (see ``Worker.wake_up``)."""

    def __call__(self, priority: int | None = None) -> None:
        """Wake them."""


def _no_wake(priority: int | None = None) -> None:
    """Default wake-up: nothing in this process to wake (workers poll)."""


@dataclass(slots=True)
class Runtime:
    """Built by ``create_app``; routes reach it through ``request.app.state.runtime``."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    inbox: InboxBroker = field(default_factory=InboxBroker)
    wake_workers: WakeWorkers = field(default=_no_wake)
    # the embedded worker's hold (``serve``): accepting an emergency pauses its bulk lanes
    worker_hold: Hold | None = None
    # per-key request limits (api.ratelimit); None: no limit (create_app always sets one)
    api_limiter: ApiRateLimiter | None = None
    # this process's Prometheus metrics (GET /metrics); the embedded worker counts here too
    metrics: Metrics = field(default_factory=Metrics)
