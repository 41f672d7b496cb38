"""The queue: batch claims under a lease, priority order, reclaiming and fencing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.db import queue
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.db.queue import Outcome
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus, EventType
from guestcomms.inbox.models import InboxItem
from guestcomms.messages.models import Delivery, DeliveryEvent
from tests.support import seed_deliveries


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database."""
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def _claim(
    sessions: async_sessionmaker[AsyncSession], *, limit: int, lease_seconds: float = 30.0
) -> tuple[uuid.UUID, list[queue.ClaimedDelivery]]:
    async with sessions() as session, session.begin():
        return await queue.claim_batch(
            session, limit=limit, lease_seconds=lease_seconds, now=utc_now()
        )


def _sent(claimed: queue.ClaimedDelivery) -> Outcome:
    return Outcome(
        delivery_id=claimed.id,
        organization_id=claimed.organization_id,
        status=DeliveryStatus.SENT,
        event=EventType.SENT,
        provider="test",
    )


async def test_claim_takes_higher_priority_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Emergency deliveries are claimed before a normal backlog queued earlier."""
    normal = await seed_deliveries(sessions, count=30, org_name="normal", priority=2)
    urgent = await seed_deliveries(sessions, count=5, org_name="urgent", priority=0)
    _, first = await _claim(sessions, limit=5)
    assert {c.id for c in first} == set(urgent)
    _, rest = await _claim(sessions, limit=100)
    assert {c.id for c in rest} == set(normal)
    assert all(c.attempts == 1 for c in first + rest)


async def test_lease_fencing_refuses_a_stale_worker(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An expired lease is reclaimed by another worker; the first worker's late write is refused."""
    await seed_deliveries(sessions, count=3)
    stale_token, stale = await _claim(sessions, limit=3, lease_seconds=0.01)
    await asyncio.sleep(0.05)
    async with sessions() as session, session.begin():
        reaped = await queue.reap_expired(session, now=utc_now(), max_attempts=5)
    assert reaped == 3
    new_token, fresh = await _claim(sessions, limit=3)
    assert {c.id for c in fresh} == {c.id for c in stale}
    assert all(c.attempts == 2 for c in fresh)
    async with sessions() as session, session.begin():
        kept = await queue.record_outcomes(
            session, token=stale_token, outcomes=[_sent(c) for c in stale], now=utc_now()
        )
    assert kept == set()
    async with sessions() as session:
        statuses = set((await session.scalars(select(Delivery.status))).all())
        sent_events = await session.scalar(
            select(func.count()).where(DeliveryEvent.type == EventType.SENT.value)
        )
    assert statuses == {DeliveryStatus.SENDING.value}
    assert sent_events == 0
    async with sessions() as session, session.begin():
        kept = await queue.record_outcomes(
            session, token=new_token, outcomes=[_sent(c) for c in fresh], now=utc_now()
        )
    assert kept == {c.id for c in fresh}


async def test_scheduled_deliveries_wait_for_send_at(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A delivery whose send_at is in the future is not claimed until it is due."""
    ids = await seed_deliveries(sessions, count=2)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids[0])
            .values(status="scheduled", send_at=utc_now() + timedelta(hours=1))
        )
    _, claimed = await _claim(sessions, limit=10)
    assert [c.id for c in claimed] == [ids[1]]


async def test_release_returns_unattempted_work(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Released deliveries go back to queued with their attempt uncounted."""
    await seed_deliveries(sessions, count=4)
    token, claimed = await _claim(sessions, limit=4)
    async with sessions() as session, session.begin():
        released = await queue.release(
            session, token=token, ids=[c.id for c in claimed], now=utc_now()
        )
    assert released == 4
    _, again = await _claim(sessions, limit=4)
    assert all(c.attempts == 1 for c in again)


async def test_reaper_kills_deliveries_out_of_attempts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A lease that expires on the last allowed attempt ends the delivery as dead."""
    await seed_deliveries(sessions, count=1)
    await _claim(sessions, limit=1, lease_seconds=0.01)
    await asyncio.sleep(0.05)
    async with sessions() as session, session.begin():
        await queue.reap_expired(session, now=utc_now(), max_attempts=1)
    async with sessions() as session:
        status = await session.scalar(select(Delivery.status))
    assert status == DeliveryStatus.DEAD.value


@pytest.mark.timeout(120)
async def test_concurrent_claimers_take_each_delivery_once(postgres_url: str) -> None:
    """On PostgreSQL, 4 concurrent claimers over 10,000 deliveries claim each exactly once."""
    engines = [create_engine(postgres_url) for _ in range(4)]
    try:
        factories = [create_session_factory(e) for e in engines]
        expected = set(await seed_deliveries(factories[0], count=10_000))

        async def claimer(sessions: async_sessionmaker[AsyncSession]) -> list[uuid.UUID]:
            taken: list[uuid.UUID] = []
            while True:
                _, batch = await _claim(sessions, limit=150)
                if not batch:
                    return taken
                taken.extend(c.id for c in batch)

        results = await asyncio.gather(*(claimer(f) for f in factories))
    finally:
        for engine in engines:
            await engine.dispose()
    every = [i for r in results for i in r]
    assert len(every) == 10_000
    assert set(every) == expected
    assert all(len(r) > 0 for r in results), [len(r) for r in results]


async def test_an_in_app_item_read_before_its_send_is_recorded_ends_delivered(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The guest reads the in-app item in the instant between its publication and the
    worker's record: the read could not mark a `sending` delivery delivered, so the record
    does; other deliveries of the batch stay `sent`."""
    await seed_deliveries(sessions, count=3)
    token, claimed = await _claim(sessions, limit=3)
    read_one, unread_one, email_one = claimed
    async with sessions() as session, session.begin():
        for delivery in (read_one, unread_one):
            session.add(
                InboxItem(
                    organization_id=delivery.organization_id,
                    contact_id=delivery.contact_id,
                    delivery_id=delivery.id,
                    title="Storm",
                    body="Moving indoors",
                    read_at=utc_now() if delivery is read_one else None,
                )
            )
    in_app = [replace(_sent(c), provider="inapp") for c in (read_one, unread_one)]
    async with sessions() as session, session.begin():
        await queue.record_outcomes(
            session, token=token, outcomes=[*in_app, _sent(email_one)], now=utc_now()
        )
    async with sessions() as session:
        statuses = dict((await session.execute(select(Delivery.id, Delivery.status))).all())
    assert statuses == {
        read_one.id: "delivered",
        unread_one.id: "sent",
        email_one.id: "sent",
    }
