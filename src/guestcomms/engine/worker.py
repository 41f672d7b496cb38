"""The worker: claim a batch under a lease, compose, send, record outcomes; repeat.

Several lanes run the same loop side by side, so one batch is being sent while the next is
claimed and the last recorded. A lane that finds no due work sleeps until woken (the API sets
the wake event after it commits new deliveries) or until the poll interval passes. An emergency
lane claims only emergency deliveries (priority 0) and is woken the moment one is accepted,
so an emergency never waits for a lane busy with a bulk batch. A reaper
returns expired leases to the queue. ``stop`` lets in-flight batches finish within the grace
period, then gives back whatever was claimed and not attempted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guestcomms.channels.base import (
    OutgoingItem,
    ProviderError,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.urgency import Hold, sending_urgently, use_hold
from guestcomms.db import queue
from guestcomms.db.queue import ClaimedDelivery, Outcome
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus, EventType, Priority
from guestcomms.domain.retry import RetryPolicy
from guestcomms.engine.composer import (
    BlockedError,
    Composed,
    ComposeError,
    Composer,
    DeferredError,
    Loaded,
)
from guestcomms.engine.dispatch import Dispatched, Dispatcher

log = structlog.get_logger("guestcomms.worker")


@functools.cache
def freeze_startup_objects() -> None:
    """Move what start-up built (modules, mappers, compiled statements: it lives as long as
    the process) out of the garbage collector's sight, once per process. A full collection
    then takes ~8 ms instead of ~120 ms here, a pause that every emergency arriving during
    it had to wait out (docs/performance.md). Garbage is collected first, so none is kept."""
    gc.collect()
    gc.freeze()


RENDER_SLICE = 20  # deliveries rendered between two turns of the event loop (~2-4 ms of CPU)
# the metrics' outcome label of each status an attempt leaves (the others are their value)
_OUTCOME_LABELS = {DeliveryStatus.SCHEDULED: "deferred"}


@dataclass(slots=True)
class WorkerStats:
    """Counters since start, for logs, the CLI and benchmarks."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    fenced_out: int = 0
    reaped: int = 0
    deferred: int = 0  # quiet hours, frequency caps
    batches: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs the send loop against the database queue. Built by ``app.create_worker``."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        composer: Composer,
        retry_policy: RetryPolicy,
        batch_size: int = 200,
        lease_seconds: float = 60.0,
        poll_interval_seconds: float = 1.0,
        lanes: int = 2,
        shutdown_grace_seconds: float = 20.0,
        wake: asyncio.Event | None = None,
        owned_engine: AsyncEngine | None = None,
        emergency_lane: bool = True,
        fair_share: bool = True,
    ) -> None:
        self._sessions = session_factory
        self._owned_engine = owned_engine
        self._companions: list[asyncio.Task[None]] = []
        self._started = False
        self.dispatcher = dispatcher
        self._composer = composer
        self._retry = retry_policy
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._poll = poll_interval_seconds
        self._lanes = lanes
        self._grace = shutdown_grace_seconds
        self.wake = wake or asyncio.Event()
        self.urgent = asyncio.Event()  # wakes the emergency lane
        # held while the emergency lane handles what woke it (and, in `serve`, while the API
        # accepts an emergency): ordinary lanes and their sends pause at their next pause
        # point, so the process (one event loop; on SQLite one writer at a time) is the
        # emergency's until it is handed off (channels/urgency.py)
        self.hold = Hold()
        self._emergency_lane_on = emergency_lane
        self._fair = fair_share
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        # claimed rows not yet recorded, by lease token: released if we stop mid-batch
        self._in_flight: dict[uuid.UUID, list[uuid.UUID]] = {}

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory this worker uses (the campaign fan-out runs beside it on it)."""
        return self._sessions

    async def wait_stopping(self) -> None:
        """Return once :meth:`stop` has been called."""
        await self._stopping.wait()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the providers (idempotent). ``run`` and ``async with`` call it."""
        if not self._started:
            await self.dispatcher.directory.start()
            self._started = True

    async def close(self) -> None:
        """Close the providers and the engine this worker owns (idempotent)."""
        if self._started:
            await self.dispatcher.directory.close()
            self._started = False
        if self._owned_engine is not None:
            await self._owned_engine.dispose()
            self._owned_engine = None

    def attach(self, task: asyncio.Task[None]) -> None:
        """A task beside the worker on its sessions (the fan-out, the rollups), which stops
        when the worker stops: :meth:`run` waits for it before closing the engine, so it
        never holds a connection of a disposed engine."""
        self._companions.append(task)

    def stop(self) -> None:
        """Ask the loop to finish in-flight work and return."""
        self._stopping.set()
        self.wake.set()
        self.urgent.set()

    def wake_up(self, priority: int | None = None) -> None:
        """New work was committed: wake the lanes. The emergency lane wakes too unless the
        work is known to be less urgent (``priority`` > 0); ``None`` means unknown."""
        self.wake.set()
        if priority is None or priority <= Priority.EMERGENCY:
            self.urgent.set()

    async def run(self) -> None:
        """Run until :meth:`stop`; then drain within the grace period and release the rest."""
        await self.start()
        log.info("worker.started", lanes=self._lanes, batch_size=self._batch_size)
        use_hold(self.hold)  # the lanes' tasks, and the sends they start, inherit it
        freeze_startup_objects()
        tasks = [asyncio.create_task(self._lane(i)) for i in range(self._lanes)]
        if self._emergency_lane_on:
            tasks.append(asyncio.create_task(self._emergency_lane()))
        tasks.append(asyncio.create_task(self._reaper()))
        try:
            await self._stopping.wait()
            _, pending = await asyncio.wait(tasks, timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._stopping.set()  # also on an error: the attached tasks stop with the worker
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release_in_flight()
            await asyncio.gather(*self._companions, return_exceptions=True)
            await self.close()
            log.info("worker.stopped", sent=self.stats.sent, claimed=self.stats.claimed)

    async def run_until_idle(self) -> int:
        """Process batches until nothing is due; return how many deliveries were processed.

        Used by the CLI demo, tests and benchmarks, where a long-running loop is not wanted.
        """
        total = 0
        while True:
            done = await self.run_once()
            if done == 0:
                return total
            total += done

    async def run_once(self, *, max_priority: int | None = None) -> int:
        """Claim, send and record one batch; return how many deliveries it held.

        ``max_priority`` claims only deliveries at least that urgent (the emergency lane).
        """
        ordinary = max_priority is None
        if ordinary:
            await self.hold.pause()
        now = utc_now()
        async with self._sessions() as session, session.begin():
            token, batch = await queue.claim_batch(
                session,
                limit=self._batch_size,
                lease_seconds=self._lease_seconds,
                now=now,
                max_priority=max_priority,
                fair=self._fair,
            )
            # The emergency lane loads in the claim's transaction: a round trip or three
            # fewer before the hand-off (the ordinary lanes keep the write lock short).
            loaded = await self._composer.load(session, batch) if batch and not ordinary else None
        if not batch:
            return 0
        self._in_flight[token] = [d.id for d in batch]
        try:
            await self._process(token, batch, ordinary=ordinary, loaded=loaded)
        finally:
            self._in_flight.pop(token, None)
        return len(batch)

    async def _process(
        self,
        token: uuid.UUID,
        batch: Sequence[ClaimedDelivery],
        *,
        ordinary: bool = True,
        loaded: Loaded | None = None,
    ) -> None:
        self.stats.claimed += len(batch)
        self.stats.batches += 1
        if loaded is None:
            async with self._sessions() as session:
                loaded = await self._composer.load(session, batch)
        composed = await self._render(batch, loaded, ordinary=ordinary)
        results: dict[uuid.UUID, Dispatched | ComposeError] = {}
        # by (urgent, organization, channel); the batch comes sorted by priority, so the
        # emergencies' groups come first
        sendable: dict[tuple[bool, uuid.UUID, str], list[OutgoingItem]] = {}
        for delivery in batch:
            done = composed[delivery.id]
            if isinstance(done, ComposeError):
                results[delivery.id] = done
            else:
                urgent = delivery.priority <= Priority.EMERGENCY
                key = (urgent, delivery.organization_id, done.channel)
                sendable.setdefault(key, []).append(done.item)
        for (urgent, organization_id, channel), items in sendable.items():
            if ordinary and not urgent:
                await self.hold.pause()
            # emergencies take a provider's next free connection slot ahead of bulk sends
            with sending_urgently(urgent):
                dispatched = await self.dispatcher.send(organization_id, channel, items)
            for item, outcome in zip(items, dispatched, strict=True):
                results[item.delivery_id] = outcome
        outcomes = [
            _with_channel(self._outcome(d, results[d.id]), composed[d.id], current=d.channel)
            for d in batch
        ]
        if ordinary:
            await self.hold.pause()
        async with self._sessions() as session, session.begin():
            kept = await queue.record_outcomes(
                session, token=token, outcomes=outcomes, now=utc_now()
            )
        self._count(outcomes, kept)
        self._measure(batch, composed, results, outcomes, kept)

    async def _render(
        self, batch: Sequence[ClaimedDelivery], loaded: Loaded, *, ordinary: bool = True
    ) -> dict[uuid.UUID, Composed | ComposeError]:
        """Render ``batch`` a slice at a time, letting the event loop run in between: a whole
        batch takes tens of milliseconds of CPU, which would hold up everything else in the
        process, an emergency lane's claim or an API request (``serve``) included."""
        composed: dict[uuid.UUID, Composed | ComposeError] = {}
        for start in range(0, len(batch), RENDER_SLICE):
            if start:
                await asyncio.sleep(0)
                if ordinary:
                    await self.hold.pause()
            part = batch[start : start + RENDER_SLICE]
            rendered = self._composer.render(part, loaded)
            composed.update(zip((d.id for d in part), rendered, strict=True))
        return composed

    def _outcome(self, delivery: ClaimedDelivery, done: Dispatched | ComposeError) -> Outcome:
        """The status and event for what happened (the channel is added by _with_channel)."""
        if isinstance(done, DeferredError):
            return Outcome(
                delivery_id=delivery.id,
                organization_id=delivery.organization_id,
                status=DeliveryStatus.SCHEDULED,
                event=EventType.DEFERRED,
                send_at=done.until,
                detail={"reason": str(done)},
                uncount_attempt=True,  # nothing was attempted
            )
        if isinstance(done, BlockedError):
            return Outcome(
                delivery_id=delivery.id,
                organization_id=delivery.organization_id,
                status=DeliveryStatus.BLOCKED,
                event=EventType.BLOCKED,
                error=str(done),
            )
        if isinstance(done, ComposeError):
            return Outcome(
                delivery_id=delivery.id,
                organization_id=delivery.organization_id,
                status=DeliveryStatus.FAILED,
                event=EventType.FAILED,
                error=str(done),
            )
        result, provider = done.result, done.provider
        if isinstance(result, SendReceipt):
            return Outcome(
                delivery_id=delivery.id,
                organization_id=delivery.organization_id,
                status=DeliveryStatus.SENT,
                event=EventType.SENT,
                provider=provider,
                provider_message_id=result.provider_message_id,
                detail=dict(result.detail) or None,
            )
        return self._failure_outcome(delivery, result, provider=provider)

    def _failure_outcome(
        self,
        delivery: ClaimedDelivery,
        error: ProviderError,
        *,
        provider: str | None,
    ) -> Outcome:
        decision = self._retry.decide(
            delivery.attempts,
            transient=isinstance(error, TransientProviderError),
            retry_after_seconds=(
                error.retry_after_seconds if isinstance(error, RateLimitedError) else None
            ),
        )
        text = f"{type(error).__name__}: {error}"
        if decision.retry:
            return Outcome(
                delivery_id=delivery.id,
                organization_id=delivery.organization_id,
                status=DeliveryStatus.RETRYING,
                event=EventType.RETRY_SCHEDULED,
                send_at=utc_now() + timedelta(seconds=decision.delay_seconds),
                provider=provider,
                error=text,
            )
        transient = isinstance(error, TransientProviderError)
        return Outcome(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            status=DeliveryStatus.DEAD if transient else DeliveryStatus.FAILED,
            event=EventType.DEAD if transient else EventType.FAILED,
            provider=provider,
            error=text,
        )

    def _count(self, outcomes: Sequence[Outcome], kept: set[uuid.UUID]) -> None:
        for o in outcomes:
            if o.delivery_id not in kept:
                self.stats.fenced_out += 1
                log.warning("worker.lease_lost", delivery_id=str(o.delivery_id))
                continue
            self.stats.by_status[o.status] = self.stats.by_status.get(o.status, 0) + 1
            if o.status is DeliveryStatus.SENT:
                self.stats.sent += 1
            elif o.status is DeliveryStatus.RETRYING:
                self.stats.retried += 1
            elif o.status is DeliveryStatus.DEAD:
                self.stats.dead += 1
            elif o.status is DeliveryStatus.SCHEDULED:
                self.stats.deferred += 1
            else:
                self.stats.failed += 1

    def _measure(
        self,
        batch: Sequence[ClaimedDelivery],
        composed: dict[uuid.UUID, Composed | ComposeError],
        results: dict[uuid.UUID, Dispatched | ComposeError],
        outcomes: Sequence[Outcome],
        kept: set[uuid.UUID],
    ) -> None:
        """Count the batch's recorded outcomes in the process's metrics, by the channel used,
        the provider's kind and the status left (``lease_lost`` when fenced out)."""
        metrics = self.dispatcher.metrics
        for delivery, outcome in zip(batch, outcomes, strict=True):
            done = composed[delivery.id]
            result = results[delivery.id]
            if delivery.id in kept:
                label = _OUTCOME_LABELS.get(outcome.status, outcome.status.value)
            else:
                label = "lease_lost"
            metrics.record_outcome(
                channel=done.channel if isinstance(done, Composed) else delivery.channel,
                provider=result.kind if isinstance(result, Dispatched) else None,
                outcome=label,
            )

    async def _lane(self, index: int) -> None:
        while not self._stopping.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("worker.batch_failed", lane=index)
                done = 0
                await asyncio.sleep(self._poll)
            if done == 0 and not self._stopping.is_set():
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self._poll)

    async def _emergency_lane(self) -> None:
        """Claim only emergency deliveries, so one never waits for a lane that is busy with
        a bulk batch (against a slow provider that can take seconds)."""
        woken = False
        while not self._stopping.is_set():
            # Cleared before the claim, not after: a wake-up that arrives while the claim
            # runs is then not lost until the next poll.
            self.urgent.clear()
            try:
                # held when woken, not on a mere poll: that would stall the bulk every second
                with self.hold.holding() if woken else contextlib.nullcontext():
                    done = await self.run_once(max_priority=Priority.EMERGENCY)
            except Exception:
                log.exception("worker.batch_failed", lane="emergency")
                done = 0
                await asyncio.sleep(self._poll)
            woken = done > 0
            if done == 0 and not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self.urgent.wait(), timeout=self._poll)
                    woken = True
                except TimeoutError:
                    woken = False

    async def _reaper(self) -> None:
        interval = max(self._lease_seconds / 4, 0.05)
        while not self._stopping.is_set():
            try:
                async with self._sessions() as session, session.begin():
                    reaped = await queue.reap_expired(
                        session, now=utc_now(), max_attempts=self._retry.max_attempts
                    )
                if reaped:
                    self.stats.reaped += reaped
                    log.info("worker.leases_reaped", count=reaped)
                    self.wake_up()
            except Exception:
                log.exception("worker.reap_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def _release_in_flight(self) -> None:
        for token, ids in list(self._in_flight.items()):
            async with self._sessions() as session, session.begin():
                released = await queue.release(session, token=token, ids=ids, now=utc_now())
            log.info("worker.released", count=released)
        self._in_flight.clear()


def _with_channel(outcome: Outcome, composed: Composed | ComposeError, *, current: str) -> Outcome:
    """Record the channel the delivery went out on, if not its first, and why others were
    passed over (a contact without a phone number, say)."""
    skipped = tuple(composed.skipped)
    channel = composed.channel if isinstance(composed, Composed) else None
    if channel == current:
        channel = None
    if channel is None and not skipped:
        return outcome
    return dataclasses.replace(outcome, channel=channel, skipped=skipped)
