"""Group commit for tracking hits: the pixel and click routes share a few transactions.

A campaign's opens arrive together (thousands of guests open the same email in the same
minute, and Apple's proxy prefetches every pixel as the messages land). One transaction per
fetch made the database's commit the bottleneck: on SQLite every fetch queued for the single
write lock, on PostgreSQL every fetch paid seven round trips (three of them the pool's ping
of the connection). Instead each route hands its hit to the process's :class:`HitRecorder`
and waits; the recorder writes the hits waiting at that moment as one batch
(``tracking.service.record_hits``: one look-up of the deliveries, one insert, one commit) and
answers every waiting route at once. While a batch is being written the next hits queue, so
batches grow with the load by themselves: one hit alone is written at once, without a timer,
and under load a batch holds what arrived during the last commit.

Durability: a route answers only after its hit's batch committed, exactly as when each fetch
had its own transaction. A crash loses no hit that was answered; the hits queued or being
written when the process dies were never answered (their clients see the connection drop,
and a mail client fetches the pixel again the next time the email is shown). On a clean
shutdown the lifespan calls :meth:`HitRecorder.close`, which writes every hit handed in
before it returns. Memory is bounded by the requests in flight: a hit waits in the queue only
while its request waits for the answer.

A batch that fails (say the database is briefly unreachable) is retried hit by hit, so one
hit that cannot be stored cannot cost the others theirs; a hit that still fails raises in its
route (a 500, as before).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.tracking.machine import MachineVerdict, Network
from guestcomms.tracking.service import Hit, record_hits

MAX_BATCH_HITS = 256  # hits per transaction; more wait for the next one

log = structlog.get_logger("guestcomms.tracking")


@dataclass(frozen=True, slots=True)
class _Waiting:
    hit: Hit
    answer: asyncio.Future[MachineVerdict | None]


class RecorderClosedError(RuntimeError):
    """A hit was handed to a recorder after :meth:`HitRecorder.close`."""


class HitRecorder:
    """Writes the hits of one process in batches, one batch at a time, so the hits are decided
    exactly in the order they came (a click's burst count sees every earlier click, the
    batch's own included). Built by ``create_app``, closed by its lifespan before the engine
    is disposed."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = MAX_BATCH_HITS,
        networks: Sequence[Network] = (),
    ) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._networks = tuple(networks)  # hits from these are machines' (machine.py)
        self._queue: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def record(self, hit: Hit) -> MachineVerdict | None:
        """Store ``hit``; return its verdict once committed, or ``None`` if its delivery is
        not its organization's (nothing stored). Raises what storing it raised."""
        return await self.submit(hit)

    def submit(self, hit: Hit) -> asyncio.Future[MachineVerdict | None]:
        """Queue ``hit`` now; the future resolves as :meth:`record` returns. Raises
        ``RecorderClosedError`` after :meth:`close`."""
        if self._closed:
            raise RecorderClosedError("the tracking recorder is closed")
        answer: asyncio.Future[MachineVerdict | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(hit, answer))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(), name="tracking-recorder")
        return answer

    async def close(self) -> None:
        """Refuse new hits and return once every queued hit is written (or has failed)."""
        self._closed = True
        if self._writer is not None:
            await self._writer

    async def _write_queued(self) -> None:
        # Runs while hits wait, then ends: the next submit starts another. Nothing awaits
        # between finding the queue empty and clearing ``_writer``, so no hit is left behind.
        batch: list[_Waiting] = []
        try:
            while self._queue:
                try:
                    # one connection for as long as hits keep coming: its checkout (and the
                    # pool's ping of it) is paid once per busy spell, not per batch
                    async with self._sessions() as session:
                        while self._queue:
                            count = min(len(self._queue), self._max_batch)
                            batch = [self._queue.popleft() for _ in range(count)]
                            if not await self._write(session, batch):
                                break  # the connection may be broken: take a fresh one
                except Exception:  # closing the session failed; every hit was answered
                    log.exception("tracking.session_failed")
        finally:
            self._writer = None
            # only when cancelled (the loop is going away): no route may wait forever
            for waiting in (*batch, *self._queue):
                waiting.answer.cancel()
            self._queue.clear()

    async def _write(self, session: AsyncSession, batch: list[_Waiting]) -> bool:
        """Write ``batch`` in one transaction and answer it; False if that failed (each hit
        was then retried alone, on fresh sessions, and answered)."""
        try:
            async with session.begin():
                verdicts = await record_hits(
                    session, [waiting.hit for waiting in batch], networks=self._networks
                )
        except Exception as error:  # handed to the waiting routes, which raise it
            log.warning("tracking.batch_failed", hits=len(batch), error=repr(error))
            for waiting in batch:
                await self._write_alone(waiting, error if len(batch) == 1 else None)
            return False
        for waiting, verdict in zip(batch, verdicts, strict=True):
            _answer(waiting, verdict=verdict)
        return True

    async def _write_alone(self, waiting: _Waiting, error: Exception | None) -> None:
        # one hit that cannot be stored must not cost the others of its batch theirs
        if error is None:
            try:
                async with self._sessions() as session, session.begin():
                    [verdict] = await record_hits(session, [waiting.hit], networks=self._networks)
            except Exception as failed:  # raised again in the route
                error = failed
            else:
                _answer(waiting, verdict=verdict)
                return
        _answer(waiting, error=error)


def _answer(
    waiting: _Waiting, *, verdict: MachineVerdict | None = None, error: Exception | None = None
) -> None:
    if waiting.answer.done():  # its request was cancelled (the client went away)
        return
    if error is not None:
        waiting.answer.set_exception(error)
    else:
        waiting.answer.set_result(verdict)
