"""The fan-out: a started campaign becomes deliveries, one batch of guests per transaction.

A runner takes a ``running`` campaign under a lease (``lease_token``, ``lease_until``, as a
worker holds a delivery) and loops; each batch is ONE transaction that

1. locks the campaign row and stops unless it is still ``running`` under this runner's token
   (a pause, cancel or edit commits under the same lock and drops the token);
2. reads the next page of the audience after ``cursor`` (keyset, ordered by contact id: the
   audience is streamed, never loaded whole);
3. writes one delivery per guest and send time (``db.bulk``: one statement per batch), the
   times computed once per zone, the guest's ``cancellation_key`` when the campaign has a
   ``while`` condition;
4. advances ``cursor``, ``processed`` and ``created`` and renews the lease; a short page
   completes the campaign.

The cursor is committed with its batch, so a runner that crashes loses at most the batch in
flight, which the next runner (after the lease expires) writes again from the cursor: no guest
is ever written twice. Two runners cannot interleave: the second cannot take a live lease, and
one whose lease expired finds another token at its next batch and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.audiences.selection import Recipient, page
from guestcomms.campaigns import experiment, repository
from guestcomms.campaigns.best_time import SendTimeModel
from guestcomms.campaigns.models import Campaign, CampaignStatus
from guestcomms.campaigns.plan import Plan, resolve
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.db import bulk
from guestcomms.db.notify import notify_workers
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.ids import new_id
from guestcomms.domain.schedule import cancellation_key
from guestcomms.domain.send_time import SendChoice
from guestcomms.errors import GuestcommsError
from guestcomms.templates.repository import TemplateRepository

log = structlog.get_logger("guestcomms.fanout")

BATCH_SIZE = 5000  # guests per transaction: large enough to amortise, a few MB at most
LEASE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a campaign's fan-out stands, reported after every batch."""

    campaign_id: uuid.UUID
    status: str
    total: int
    processed: int
    created: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class Lease:
    """A campaign this runner holds."""

    campaign_id: uuid.UUID
    organization_id: uuid.UUID
    token: uuid.UUID


async def take(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: uuid.UUID,
    *,
    lease_seconds: float = LEASE_SECONDS,
) -> Lease | None:
    """Lease one running campaign, unless a live runner holds it."""
    token = new_id()
    async with sessions() as session, session.begin():
        org = await repository.take_lease(
            session, campaign_id, token=token, now=utc_now(), lease_seconds=lease_seconds
        )
    return None if org is None else Lease(campaign_id, org, token)


async def fan_out(
    sessions: async_sessionmaker[AsyncSession],
    lease: Lease,
    *,
    batch_size: int = BATCH_SIZE,
    lease_seconds: float = LEASE_SECONDS,
    on_progress: ProgressCallback | None = None,
    max_batches: int | None = None,
    stopping: asyncio.Event | None = None,
) -> Progress | None:
    """Fan the leased campaign out, batch by batch, until it completes, is paused, cancelled
    or edited, or the lease is lost; return the last progress (``None`` if nothing ran).

    ``max_batches`` stops early, keeping the lease (tests use it to act between batches, or
    to play a runner that died); ``stopping`` (a worker shutting down) stops at the next
    batch boundary and gives the lease up, so the next runner need not wait for it to
    expire. A campaign that no longer validates (its template deleted, say) is marked
    ``failed`` with the reason.
    """
    try:
        async with sessions() as session:
            plan, started = await _plan(session, lease)
            model = (
                await SendTimeModel.learn(
                    session, plan, organization_id=lease.organization_id, now=utc_now()
                )
                if plan is not None and plan.send_time is not None
                else None
            )
    except GuestcommsError as e:
        await _fail(sessions, lease, str(e))
        return None
    if plan is None or started is None:
        return None
    last: Progress | None = None
    batches = 0
    while max_batches is None or batches < max_batches:
        async with sessions() as session, session.begin():
            progress = await _batch(
                session,
                lease,
                plan,
                model=model,
                started=started,
                batch_size=batch_size,
                lease_seconds=lease_seconds,
            )
        if progress is None:
            break
        batches += 1
        last = progress
        if on_progress is not None:
            on_progress(progress)
        if progress.status != CampaignStatus.RUNNING:
            return last
        if stopping is not None and stopping.is_set():
            async with sessions() as session, session.begin():
                await repository.drop_lease(session, lease.campaign_id, token=lease.token)
            break
    return last


async def _plan(session: AsyncSession, lease: Lease) -> tuple[Plan | None, datetime | None]:
    repo = CampaignRepository(session, lease.organization_id)
    campaign = await repo.get(lease.campaign_id)
    if campaign is None or campaign.lease_token != lease.token:
        return None, None
    plan = await resolve(repo, TemplateRepository(session, lease.organization_id), campaign)
    return plan, campaign.started_at or utc_now()


async def _fail(sessions: async_sessionmaker[AsyncSession], lease: Lease, error: str) -> None:
    async with sessions() as session, session.begin():
        campaign = await CampaignRepository(session, lease.organization_id).get(
            lease.campaign_id, for_update=True
        )
        if campaign is not None and campaign.lease_token == lease.token:
            campaign.status = CampaignStatus.FAILED.value
            campaign.error = error
            campaign.lease_token = None
            campaign.lease_until = None
    log.warning("fanout.failed", campaign_id=str(lease.campaign_id), error=error)


async def _batch(
    session: AsyncSession,
    lease: Lease,
    plan: Plan,
    *,
    model: SendTimeModel | None,
    started: datetime,
    batch_size: int,
    lease_seconds: float,
) -> Progress | None:
    """One batch in the caller's transaction; ``None`` if the campaign is no longer ours."""
    repo = CampaignRepository(session, lease.organization_id)
    campaign = await repo.get(lease.campaign_id, for_update=True)
    if (
        campaign is None
        or campaign.status != CampaignStatus.RUNNING
        or campaign.lease_token != lease.token
    ):
        return None
    message = await repo.message_of(campaign.id)
    if message is None:  # started campaigns always have one; an edit never removes it
        return None
    guests = await page(session, plan.audience, after=campaign.cursor, limit=batch_size)
    now = utc_now()
    choices = (
        await model.choose(
            session,
            plan,
            guests,
            organization_id=lease.organization_id,
            started=started,
            now=now,
        )
        if model is not None
        else None
    )
    any_queued = False
    created = 0
    for arm, members in await _arms_of(session, campaign, plan, guests):
        slots, rows = _rows(campaign.id, plan, members, started=started, now=now, chosen=choices)
        common = bulk.DeliveryColumns(
            organization_id=lease.organization_id,
            message_id=message.id,
            channel=message.channel if arm is None else plan.arms[arm].channel,
            priority=message.priority,
            template_version_id=(
                message.template_version_id if arm is None else plan.arms[arm].version.id
            ),
            now=now,
            experiment_arm=arm,
        )
        created += await bulk.insert_deliveries(session, common=common, slots=slots, rows=rows)
        any_queued = any_queued or any(s.status is DeliveryStatus.QUEUED for s in slots)
    _advance(campaign, guests=len(guests), created=created, full=len(guests) == batch_size)
    if campaign.status == CampaignStatus.COMPLETED and _testing_first(campaign, plan):
        # the test fraction has its deliveries: wait for a winner before the rest
        campaign.status = CampaignStatus.TESTING.value
        campaign.completed_at = None
        experiment.mark_tested(campaign, now=now)
    campaign.lease_until = now + timedelta(seconds=lease_seconds)
    if guests:
        campaign.cursor = guests[-1].contact_id
        await repo.add_recipients(message.id, len(guests))
        if any_queued:
            await notify_workers(session)
    if campaign.status == CampaignStatus.TESTING:
        campaign.cursor = None  # the rollout reads the audience again, for the others
    return Progress(
        campaign_id=campaign.id,
        status=campaign.status,
        total=campaign.total,
        processed=campaign.processed,
        created=campaign.created,
    )


async def _arms_of(
    session: AsyncSession, campaign: Campaign, plan: Plan, guests: Sequence[Recipient]
) -> list[tuple[int | None, Sequence[Recipient]]]:
    """The batch's guests by experiment arm (one group, arm ``None``, without an
    experiment)."""
    if plan.experiment is None:
        return [(None, guests)]
    weights = await experiment.batch_weights(session, campaign, plan)
    return sorted(experiment.split(campaign, plan, guests, weights=weights).items())


def _testing_first(campaign: Campaign, plan: Plan) -> bool:
    return (
        plan.experiment is not None
        and plan.experiment.test_fraction is not None
        and experiment.phase(campaign) == experiment.TEST
    )


def _rows(
    campaign_id: uuid.UUID,
    plan: Plan,
    guests: Sequence[Recipient],
    *,
    started: datetime,
    now: datetime,
    chosen: dict[uuid.UUID, SendChoice] | None = None,
) -> tuple[list[bulk.Slot], list[bulk.DeliveryRow]]:
    """The batch's send times (few: one per zone and occurrence, or per hour of the send-time
    window) and one row per guest and send time. The per-guest loop does only dictionary
    look-ups: it runs 50,000 times."""
    slots: list[bulk.Slot] = []
    slot_of: dict[datetime, int] = {}
    by_zone: dict[str | None, list[int]] = {}
    keyed = plan.condition is not None
    rows: list[bulk.DeliveryRow] = []
    append = rows.append
    if chosen is not None:
        return _chosen_rows(campaign_id, plan, guests, chosen, now=now)
    for guest in guests:
        indexes = by_zone.get(guest.timezone)
        if indexes is None:
            indexes = by_zone[guest.timezone] = []
            for send_at in plan.send_times(guest.timezone, started=started, now=now):
                if send_at not in slot_of:
                    slot_of[send_at] = len(slots)
                    status = DeliveryStatus.SCHEDULED if send_at > now else DeliveryStatus.QUEUED
                    slots.append(bulk.Slot(send_at, status))
                indexes.append(slot_of[send_at])
        key = cancellation_key(campaign_id, guest.contact_id) if keyed else None
        for index in indexes:
            append((guest.contact_id, index, key, None))
    return slots, rows


def _chosen_rows(
    campaign_id: uuid.UUID,
    plan: Plan,
    guests: Sequence[Recipient],
    chosen: dict[uuid.UUID, SendChoice],
    *,
    now: datetime,
) -> tuple[list[bulk.Slot], list[bulk.DeliveryRow]]:
    # one delivery per guest at the optimiser's time, with its confidence
    slots: list[bulk.Slot] = []
    slot_of: dict[datetime, int] = {}
    keyed = plan.condition is not None
    rows: list[bulk.DeliveryRow] = []
    for guest in guests:
        choice = chosen[guest.contact_id]
        index = slot_of.get(choice.send_at)
        if index is None:
            index = slot_of[choice.send_at] = len(slots)
            status = DeliveryStatus.SCHEDULED if choice.send_at > now else DeliveryStatus.QUEUED
            slots.append(bulk.Slot(choice.send_at, status))
        key = cancellation_key(campaign_id, guest.contact_id) if keyed else None
        rows.append((guest.contact_id, index, key, round(choice.confidence, 4)))
    return slots, rows


def _advance(campaign: Campaign, *, guests: int, created: int, full: bool) -> None:
    campaign.processed += guests
    campaign.created += created
    # the audience may have grown since it was counted at start
    campaign.total = max(campaign.total, campaign.processed)
    if not full:
        campaign.status = CampaignStatus.COMPLETED.value
        campaign.completed_at = utc_now()
        campaign.lease_token = None
        campaign.lease_until = None


class FanoutRunner:
    """Runs inside every worker process (``serve`` and ``guestcomms worker``): finds running
    campaigns that no live runner holds, takes each under a lease and fans it out. Polls every
    ``poll_interval_seconds``; ``on_batch`` (the send worker's wake-up) runs after each
    committed batch, so deliveries due now go out while the fan-out continues."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        batch_size: int = BATCH_SIZE,
        lease_seconds: float = LEASE_SECONDS,
        poll_interval_seconds: float = 1.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._poll = poll_interval_seconds
        self._on_batch = on_batch
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the batch in flight, then return from :meth:`run`."""
        self._stopping.set()

    async def run(self) -> None:
        """Fan out campaigns until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("fanout.round_failed")
                done = 0
            if done == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._poll)

    async def run_until_idle(self) -> int:
        """Fan out every runnable campaign; return how many were taken (tests, CLI)."""
        total = 0
        while done := await self.run_once():
            total += done
        return total

    async def run_once(self) -> int:
        """Take and fan out the runnable campaigns found now; return how many were taken."""
        async with self._sessions() as session, session.begin():
            await experiment.start_rollouts(session, now=utc_now())
        async with self._sessions() as session:
            found = await repository.runnable(session, now=utc_now())
        taken = 0
        for campaign_id in found:
            if self._stopping.is_set():
                break
            lease = await take(self._sessions, campaign_id, lease_seconds=self._lease_seconds)
            if lease is None:
                continue
            taken += 1
            log.info("fanout.started", campaign_id=str(campaign_id))
            last = await fan_out(
                self._sessions,
                lease,
                batch_size=self._batch_size,
                lease_seconds=self._lease_seconds,
                on_progress=self._progress,
                stopping=self._stopping,
            )
            if last is not None:
                log.info(
                    "fanout.stopped",
                    campaign_id=str(campaign_id),
                    status=last.status,
                    processed=last.processed,
                    created=last.created,
                )
        return taken

    def _progress(self, progress: Progress) -> None:
        del progress
        if self._on_batch is not None:
            self._on_batch()
