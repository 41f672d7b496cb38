"""Routing through provider accounts against the provider simulator: failover, the circuit
breaker, Retry-After, permanent errors, refused credentials, rate limits and replays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.app import create_worker
from guestcomms.channels.simulator import ProviderSimulator, SimulatorCredentials
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.breaker import BreakerState
from guestcomms.engine.worker import Worker
from guestcomms.messages.models import Delivery
from guestcomms.organizations.models import Organization
from guestcomms.providers.models import OperationalEvent, ProviderAccount
from tests.support import make_settings, seed_deliveries

CREDS = SimulatorCredentials()


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database."""
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def _account(
    sessions: async_sessionmaker[AsyncSession], simulator: ProviderSimulator, **fields: Any
) -> None:
    kind = fields.pop("kind")
    secrets = {
        "postmark": {"server_token": CREDS.postmark_server_token},
        "sendgrid": {"api_key": CREDS.sendgrid_api_key},
        "resend": {"api_key": CREDS.resend_api_key},
    }[kind]
    async with sessions() as session, session.begin():
        org = await session.scalar(select(Organization).where(Organization.name == "Seeded"))
        assert org is not None
        session.add(
            ProviderAccount(
                organization_id=org.id,
                name=fields.pop("name", kind),
                kind=kind,
                channel="email",
                settings={"base_url": simulator.base_url},
                credentials={**secrets, **fields.pop("credentials", {})},
                **fields,
            )
        )


async def _statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[tuple[str, str], int]:
    async with sessions() as session:
        rows = await session.execute(
            select(Delivery.status, Delivery.provider, func.count()).group_by(
                Delivery.status, Delivery.provider
            )
        )
        return {(r[0], r[1]): r[2] for r in rows}


async def _drain(worker: Worker, *, rounds: int = 30) -> None:
    for _ in range(rounds):
        await worker.run_until_idle()
        await asyncio.sleep(0.06)


async def test_failover_with_breaker(
    database_url: str, sessions: async_sessionmaker[AsyncSession], simulator: ProviderSimulator
) -> None:
    """Primary answering 500: all 1,000 go through the secondary; the breaker opens within
    its threshold, half-opens after its cool-down, and closes when the primary recovers."""
    await seed_deliveries(sessions, count=1000)
    await _account(sessions, simulator, kind="postmark", name="primary", priority=0)
    await _account(sessions, simulator, kind="sendgrid", name="secondary", priority=1)
    simulator.inject("postmark", status=500, count=10_000)
    settings = make_settings(
        database_url, breaker_failure_threshold=5, breaker_cooldown_seconds=30.0
    )
    clock = FakeClock()
    async with create_worker(settings) as worker:
        worker.dispatcher.clock = clock
        await worker.run_until_idle()
        assert await _statuses(sessions) == {("sent", "secondary"): 1000}
        primary = next(b for k, b in worker.dispatcher.breakers.items() if k.endswith(":primary"))
        assert primary.state(clock()) is BreakerState.OPEN
        # one failed batch request opened it: the primary was not hammered for each batch
        assert simulator.count("postmark") == 1
        assert simulator.count("sendgrid") == 1000

        clock.advance(29.0)
        assert primary.state(clock()) is BreakerState.OPEN
        clock.advance(1.5)
        assert primary.state(clock()) is BreakerState.HALF_OPEN
        simulator.clear_faults()
        await seed_deliveries(sessions, count=5, org_name="Later", email_domain="later.example")
        await _account_for(sessions, simulator, org_name="Later")
        await worker.run_until_idle()
    assert primary.state(clock()) is BreakerState.CLOSED
    assert simulator.count("postmark") == 2  # the half-open probe batch went through
    assert await _statuses(sessions) == {("sent", "secondary"): 1000, ("sent", "primary"): 5}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _account_for(
    sessions: async_sessionmaker[AsyncSession], simulator: ProviderSimulator, *, org_name: str
) -> None:
    """Move the organization's deliveries to the Seeded organization's providers."""
    async with sessions() as session, session.begin():
        seeded = await session.scalar(select(Organization).where(Organization.name == "Seeded"))
        later = await session.scalar(select(Organization).where(Organization.name == org_name))
        assert seeded is not None
        assert later is not None
        await session.execute(
            Delivery.__table__.update()
            .where(Delivery.organization_id == later.id)
            .values(organization_id=seeded.id)
        )


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_delays_the_next_attempt(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    simulator: ProviderSimulator,
    form: str,
) -> None:
    """A 429 with Retry-After (seconds or HTTP date) puts the retry at least that far off."""
    await seed_deliveries(sessions, count=1)
    await _account(sessions, simulator, kind="sendgrid")
    wait = 30
    retry_after = (
        str(wait)
        if form == "seconds"
        else format_datetime(datetime.now(UTC) + timedelta(seconds=wait + 1), usegmt=True)
    )
    simulator.inject("sendgrid", status=429, retry_after=retry_after)
    before = datetime.now(UTC)
    async with create_worker(make_settings(database_url)) as worker:
        await worker.run_until_idle()
    async with sessions() as session:
        delivery = await session.scalar(select(Delivery))
    assert delivery is not None
    assert delivery.status == "retrying"
    assert delivery.send_at >= before + timedelta(seconds=wait - 1)
    assert simulator.count("sendgrid") == 1


async def test_permanent_error_is_attempted_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession], simulator: ProviderSimulator
) -> None:
    """A 400 from the only provider fails the delivery after exactly one request."""
    await seed_deliveries(sessions, count=1)
    await _account(sessions, simulator, kind="sendgrid")
    simulator.inject("sendgrid", status=400, count=5)
    async with create_worker(make_settings(database_url)) as worker:
        await _drain(worker, rounds=3)
    assert await _statuses(sessions) == {("failed", "sendgrid"): 1}
    assert simulator.count("sendgrid") == 1


async def test_refused_credentials_take_the_provider_out(
    database_url: str, sessions: async_sessionmaker[AsyncSession], simulator: ProviderSimulator
) -> None:
    """A 401 marks the account credentials_failing, records an operational event, moves the
    send to the next provider, and the account is not used again until fixed."""
    await seed_deliveries(sessions, count=3)
    await _account(
        sessions,
        simulator,
        kind="sendgrid",
        name="bad",
        priority=0,
        credentials={"api_key": "SG.wrong"},
    )
    await _account(sessions, simulator, kind="resend", name="good", priority=1)
    async with create_worker(make_settings(database_url)) as worker:
        await worker.run_until_idle()
        assert await _statuses(sessions) == {("sent", "good"): 3}
        refused = simulator.count("sendgrid")  # the first batch's concurrent requests
        assert 1 <= refused <= 3
        await seed_deliveries(sessions, count=2, org_name="More", email_domain="more.example")
        await _account_for(sessions, simulator, org_name="More")
        await worker.run_until_idle()
    assert simulator.count("sendgrid") == refused  # not used again
    assert simulator.count("resend") == 5
    async with sessions() as session:
        account = await session.scalar(select(ProviderAccount).where(ProviderAccount.name == "bad"))
        events = (await session.scalars(select(OperationalEvent))).all()
    assert account is not None
    assert account.status == "credentials_failing"
    assert [(e.kind, e.subject) for e in events] == [("provider.credentials_failing", "bad")]


async def test_dead_delivery_replay_keeps_its_idempotency_key(
    database_url: str, sessions: async_sessionmaker[AsyncSession], simulator: ProviderSimulator
) -> None:
    """A delivery that died on 503s is sent once on replay, with the same Idempotency-Key."""
    [delivery_id] = await seed_deliveries(sessions, count=1)
    await _account(sessions, simulator, kind="resend")
    simulator.inject("resend", status=503, count=2)
    settings = make_settings(database_url, max_attempts=2)
    async with create_worker(settings) as worker:
        await _drain(worker, rounds=4)
        assert await _statuses(sessions) == {("dead", "resend"): 1}
        async with sessions() as session, session.begin():
            delivery = await session.get(Delivery, delivery_id)
            assert delivery is not None
            delivery.status, delivery.attempts = "queued", 0
        await worker.run_until_idle()
    assert await _statuses(sessions) == {("sent", "resend"): 1}
    keys = [r.headers.get("Idempotency-Key") for r in simulator.requests_for("resend")]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert keys[0] == f"dlv_{delivery_id.hex}"


@pytest.mark.alone  # a rate per second: another worker's load would skew the timestamps
@pytest.mark.timeout(60)
async def test_rate_limit_holds_the_provider_to_its_rate(
    sqlite_url: str, simulator: ProviderSimulator
) -> None:
    """Limited to 50/s, 500 deliveries take about 10 s and no second sees more than 50+burst."""
    engine = create_engine(sqlite_url)
    sessions = create_session_factory(engine)
    try:
        await seed_deliveries(sessions, count=500)
        await _account(sessions, simulator, kind="sendgrid", rate_per_second=50.0, burst=5)
        started = time.monotonic()
        async with create_worker(make_settings(sqlite_url)) as worker:
            await _drain(worker, rounds=3)
        elapsed = time.monotonic() - started
        assert await _statuses(sessions) == {("sent", "sendgrid"): 500}
    finally:
        await engine.dispose()
    assert elapsed >= (500 - 5) / 50 - 0.5
    assert simulator.max_in_any_window("sendgrid", seconds=1.0) <= 50 + 5
