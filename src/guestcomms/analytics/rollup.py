"""The rollup job: adds the counters of new delivery and tracking events to hourly rows.

Each pass reads the events whose ids lie between the watermark and the start of the minute
that ended at least ``settle_seconds`` ago (ids are UUIDv7, so an id bound is a time bound),
at most ``MAX_WINDOW`` of them per transaction, adds their counters to their hour's row of
each key (``RollupRepository.merge``) and moves the watermark, all in one transaction: a
crash loses nothing and counts nothing twice. Passing every minute keeps the raw tail that
every query reads (the events past the watermark) to a minute or two of events, rather
than the up to an hour that closed hours alone would leave: at 1,000,000 events that tail
was most of a query's time. The settle time lets transactions that were still open at the
minute's end commit first; an event committed later than that, with an older id, would be
missed (none of ours is written that late: every write transaction is short).

Nothing in the send path calls this: the worker runs ``RollupRunner`` beside the fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.analytics.repository import (
    RollupRepository,
    Window,
    plan_each_query,
    raw_counters,
    raw_links,
)
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import id_floor, id_time

log = structlog.get_logger("guestcomms.analytics")

SETTLE_SECONDS = 60.0
INTERVAL_SECONDS = 60.0  # between passes
MAX_WINDOW = timedelta(days=1)  # of events per transaction, so a first pass over years
# of history does not hold one long transaction


def rollup_end(now: datetime, *, settle_seconds: float) -> datetime:
    """The start of the minute in which ``now - settle_seconds`` falls: events before it
    roll up."""
    settled = now - timedelta(seconds=settle_seconds)
    return settled.replace(second=0, microsecond=0)


async def roll_up_once(
    session: AsyncSession, *, now: datetime | None = None, settle_seconds: float = SETTLE_SECONDS
) -> bool:
    """Roll up one window of events past the watermark; True if there may be more.

    The caller owns the transaction (one per call)."""
    await plan_each_query(session)
    repo = RollupRepository(session)
    lo = await repo.position()
    end = id_floor(rollup_end(now or utc_now(), settle_seconds=settle_seconds))
    first = await repo.first_id_from(lo)
    if first is None or first >= end:
        return False
    hi = min(end, id_floor(id_time(first) + MAX_WINDOW))
    window = Window(lo=lo, hi=hi)
    counters = await raw_counters(session, window)
    links = await raw_links(session, window)
    await repo.merge(counters, links)
    await repo.advance(hi)
    log.info("analytics.rolled_up", rows=len(counters), links=len(links), until=id_time(hi))
    return hi < end


async def roll_up(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> int:
    """Roll up everything due, one transaction per window; return the windows done."""
    done = 0
    while True:
        async with sessions() as session, session.begin():
            more = await roll_up_once(session, now=now, settle_seconds=settle_seconds)
        done += 1
        if not more:
            return done


class RollupRunner:
    """Runs ``roll_up`` every ``interval_seconds`` until stopped (in the worker process)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        interval_seconds: float = INTERVAL_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._interval = interval_seconds
        self._settle = settle_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the pass in progress, then return from ``run``."""
        self._stopping.set()

    async def run(self) -> None:
        """Pass after pass; a failed pass is logged and retried at the next interval."""
        while not self._stopping.is_set():
            try:
                await roll_up(self._sessions, settle_seconds=self._settle)
            except Exception:  # a database hiccup must not stop the worker beside it
                log.exception("analytics.rollup_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
