"""The worker against a real SMTP server: retries, permanent failures, dead letters, and
the transactional enqueue (nothing from a rolled-back request is ever sent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.app import create_worker
from guestcomms.contacts.repository import ContactRepository
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.events.repository import EventRepository
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.schemas import MessageCreate
from guestcomms.messages.service import MessageService
from guestcomms.templates.repository import TemplateRepository
from tests.smtp_server import SmtpTestServer
from tests.support import make_settings, seed_deliveries


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database."""
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def smtp() -> AsyncIterator[SmtpTestServer]:
    """A real SMTP server for the test."""
    with SmtpTestServer() as server:
        yield server  # type: ignore[misc]


async def _deliveries(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(Delivery.status, Delivery.attempts, Delivery.last_error)
                )
            ).all()
        )


async def _event_types(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(
            (await session.scalars(select(DeliveryEvent.type).order_by(DeliveryEvent.id))).all()
        )


async def _drain(worker: Any, *, rounds: int = 20) -> None:
    """Run batches until nothing is due, waiting out short retry delays in between."""
    for _ in range(rounds):
        await worker.run_until_idle()
        await asyncio.sleep(0.06)  # retry delays in tests are at most 0.05 s


async def test_transient_failure_is_retried_then_sent(
    database_url: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpTestServer
) -> None:
    """A 451 reply is retried with backoff, and the next attempt is sent."""
    await seed_deliveries(sessions, count=1)
    smtp.fail_next(451, count=1, stage="DATA", text="try again later")
    settings = make_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)
    async with create_worker(settings) as worker:
        await _drain(worker)
    [(status, attempts, _)] = await _deliveries(sessions)
    assert (status, attempts) == ("sent", 2)
    assert await _event_types(sessions) == ["retry_scheduled", "sent"]
    assert len(smtp.messages) == 1


async def test_permanent_failure_is_attempted_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpTestServer
) -> None:
    """A 550 reply ends the delivery as failed after exactly one attempt."""
    await seed_deliveries(sessions, count=1)
    smtp.fail_next(550, count=1, stage="RCPT", text="5.1.1 no such user")
    settings = make_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)
    async with create_worker(settings) as worker:
        await _drain(worker, rounds=3)
    [(status, attempts, error)] = await _deliveries(sessions)
    assert (status, attempts) == ("failed", 1)
    assert "5.1.1" in error
    assert await _event_types(sessions) == ["failed"]


async def test_exhausted_retries_end_dead(
    database_url: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpTestServer
) -> None:
    """A delivery that keeps failing transiently is dead after max_attempts attempts."""
    await seed_deliveries(sessions, count=1)
    smtp.fail_next(421, count=100, stage="MAIL", text="busy")
    settings = make_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port, max_attempts=3)
    async with create_worker(settings) as worker:
        await _drain(worker)
    [(status, attempts, _)] = await _deliveries(sessions)
    assert (status, attempts) == ("dead", 3)
    assert await _event_types(sessions) == ["retry_scheduled", "retry_scheduled", "dead"]
    assert smtp.messages == []


async def test_unreachable_server_is_transient(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """With the SMTP server down, deliveries wait for a retry instead of failing."""
    await seed_deliveries(sessions, count=2)
    settings = make_settings(
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=1,
        max_attempts=5,
        retry_base_seconds=60.0,  # so run_until_idle does not come round to the retry
        retry_max_seconds=60.0,
    )
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    statuses = {status for status, _, _ in await _deliveries(sessions)}
    assert statuses == {"retrying"}


async def test_rolled_back_request_leaves_nothing_to_send(
    database_url: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpTestServer
) -> None:
    """A send whose transaction rolls back leaves no delivery; a committed one, one each."""
    seeded = await seed_deliveries(sessions, count=3, org_name="Rollback")
    async with sessions() as session:
        first = await session.scalar(select(Delivery).where(Delivery.id == seeded[0]))
    assert first is not None
    org = first.organization_id
    async with sessions() as session, session.begin():
        await session.execute(Delivery.__table__.delete())
    contact_ids = []
    async with sessions() as session:
        contact_ids = [
            c.id for c in await ContactRepository(session, org).page(after=None, limit=10)
        ]
        template = (await TemplateRepository(session, org).page(after=None, limit=1))[0]
    request = MessageCreate(
        template_id=f"tpl_{template.id.hex}",
        contact_ids=[f"ct_{c.hex}" for c in contact_ids] * 2,
    )

    class BoomError(Exception):
        pass

    async def create_then_fail() -> None:
        async with sessions() as session, session.begin():
            await service(session).create(request)
            raise BoomError

    def service(session: AsyncSession) -> MessageService:
        return MessageService(
            messages=MessageRepository(session, org),
            contacts=ContactRepository(session, org),
            templates=TemplateRepository(session, org),
            events=EventRepository(session, org),
            max_recipients=100,
        )

    with pytest.raises(BoomError):
        await create_then_fail()
    settings = make_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)
    async with create_worker(settings) as worker:
        assert await worker.run_until_idle() == 0
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert smtp.messages == []

    async with sessions() as session, session.begin():
        created = await service(session).create(request)
    async with create_worker(settings) as worker:
        assert await worker.run_until_idle() == 3
    async with sessions() as session:
        per_contact = (
            await session.execute(
                select(Delivery.contact_id, Delivery.channel, func.count())
                .where(Delivery.message_id == created.message.id)
                .group_by(Delivery.contact_id, Delivery.channel)
            )
        ).all()
    assert sorted(row[2] for row in per_contact) == [1, 1, 1]
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [
        "guest0@example.com",
        "guest1@example.com",
        "guest2@example.com",
    ]
