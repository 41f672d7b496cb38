"""Priority lanes and fair share (issue 4): an emergency overtakes a 20,000-delivery backlog
and does not wait for the bulk batches in flight; a small organization's send is not held
behind another organization's huge one; one organization alone still gets full batches.

The end-to-end tests run the real API and embedded worker on the dev outbox, and record in
one list, in the order it happens (everything runs on one event loop), when each claim
starts, which deliveries it took, and when each batch is handed to the provider. They assert
on that order, never on durations.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.channels.base import OutgoingEmail, SendResult
from guestcomms.channels.outbox import OutboxProvider
from guestcomms.channels.urgency import is_urgent
from guestcomms.db import queue
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.db.notify import listen_for_wakeups, notify_workers
from guestcomms.domain.clock import utc_now
from guestcomms.messages.models import Delivery
from tests.support import (
    create_contact,
    create_key,
    create_template,
    make_settings,
    running_app,
    seed_deliveries,
)

BACKLOG = 20_000
BATCH = 200
LANES = 2
WAIT_SECONDS = 120.0


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database."""
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@dataclass
class Claim:
    """One claim: where it started in the trace, its lane's filter, what it took."""

    started: int
    max_priority: int | None
    ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Trace:
    """Claims, hand-offs to the provider and test milestones, in the order they happened.

    ``gate``, while closed, holds every non-urgent batch at the provider: a provider so slow
    that the bulk lanes stay busy with the batches they hold.
    """

    steps: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    handoffs: list[tuple[int, list[uuid.UUID]]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrap the worker's claim and the dev outbox's send to record them."""
        claim_batch = queue.claim_batch
        send_batch = OutboxProvider.send_batch

        async def recording_claim(
            session: AsyncSession, **kwargs: Any
        ) -> tuple[uuid.UUID, list[queue.ClaimedDelivery]]:
            claim = Claim(started=self.mark("claim"), max_priority=kwargs.get("max_priority"))
            token, claimed = await claim_batch(session, **kwargs)
            claim.ids = [c.id for c in claimed]
            self.claims.append(claim)
            return token, claimed

        async def recording_send(
            provider: OutboxProvider, items: Sequence[OutgoingEmail]
        ) -> list[SendResult]:
            self.handoffs.append((self.mark("handoff"), [i.delivery_id for i in items]))
            if not is_urgent():
                await self.gate.wait()
            return await send_batch(provider, items)

        monkeypatch.setattr(queue, "claim_batch", recording_claim)
        monkeypatch.setattr(OutboxProvider, "send_batch", recording_send)

    def mark(self, what: str) -> int:
        """Append a step; return its position."""
        self.steps.append(what)
        return len(self.steps) - 1

    def handed_off(self, ids: set[uuid.UUID]) -> list[uuid.UUID]:
        """The deliveries among ``ids`` handed to the provider, in hand-off order."""
        return [i for _, batch in self.handoffs for i in batch if i in ids]

    def handoff_position(self, delivery_id: uuid.UUID) -> int:
        """Where in the trace ``delivery_id`` was handed to the provider."""
        return next(at for at, batch in self.handoffs if delivery_id in batch)

    def bulk_claims_after(self, position: int) -> list[Claim]:
        """The claims of the ordinary lanes that started after ``position``."""
        later = [c for c in self.claims if c.started > position and c.max_priority is None]
        return sorted(later, key=lambda c: c.started)


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` is true (the worker makes progress in the background)."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


async def _message_body(client: Any, *, email: str, priority: str) -> dict[str, Any]:
    contact = await create_contact(client, email=email, first_name="Ana")
    template = await create_template(client)
    return {
        "template_id": template,
        "contact_ids": [contact],
        "variables": {"venue": "the old mill"},
        "priority": priority,
    }


async def _message_deliveries(
    sessions: async_sessionmaker[AsyncSession], organization_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Delivery.id).where(Delivery.organization_id.in_(organization_ids))
        )
        return set(rows)


@pytest.mark.timeout(300)
async def test_emergency_overtakes_a_backlog_and_the_batches_in_flight(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 20,000 normal deliveries queued and both ordinary lanes stuck on a slow provider,
    an emergency sent through the API is handed to the provider at once (by the emergency
    lane), and so before any normal delivery claimed after it was accepted."""
    bulk = set(await seed_deliveries(sessions, count=BACKLOG, org_name="Bulk"))
    key = await create_key(database_url, "Rescue")
    trace = Trace()
    trace.install(monkeypatch)
    settings = make_settings(database_url, batch_size=BATCH, worker_concurrency=LANES)
    async with running_app(settings, embedded_worker=True) as api, api.as_key(key) as client:
        body = await _message_body(client, email="guest@rescue.example", priority="emergency")
        # both ordinary lanes hold a bulk batch the provider does not answer
        await until(lambda: len(trace.handed_off(bulk)) >= LANES * BATCH, "bulk in flight")
        response = await client.post("/v1/messages", json=body)
        assert response.status_code == 202, response.text
        accepted = trace.mark("accepted")
        emergency = await _emergency_id(sessions, bulk)
        await until(lambda: bool(trace.handed_off({emergency})), "the emergency handed off")
        in_flight_then = len(trace.handed_off(bulk))
        trace.gate.set()
        await until(lambda: len(trace.bulk_claims_after(accepted)) >= 2, "later bulk claims")
        later = {i for c in trace.bulk_claims_after(accepted)[:2] for i in c.ids} & bulk
        await until(lambda: later <= set(trace.handed_off(later)), "later bulk handed off")

    assert in_flight_then == LANES * BATCH  # nothing else went out before the emergency
    assert later, "no normal delivery was claimed after the emergency was accepted"
    emergency_at = trace.handoff_position(emergency)
    assert all(trace.handoff_position(i) > emergency_at for i in later)
    [urgent_claim] = [c for c in trace.claims if emergency in c.ids]
    assert urgent_claim.max_priority == 0  # the emergency lane took it
    assert urgent_claim.ids == [emergency]


async def _emergency_id(
    sessions: async_sessionmaker[AsyncSession], bulk: set[uuid.UUID]
) -> uuid.UUID:
    async with sessions() as session:
        ids = set(await session.scalars(select(Delivery.id).where(Delivery.priority == 0)))
    [emergency] = ids - bulk
    return emergency


@pytest.mark.timeout(300)
async def test_small_organization_is_not_held_behind_a_huge_campaign(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Organization A has 20,000 deliveries queued and draining; organization B sends 100.
    B's deliveries are all taken by the first claim after B's send is accepted, and all
    handed off before another quarter of A's backlog is."""
    big = set(await seed_deliveries(sessions, count=BACKLOG, org_name="Big"))
    key = await create_key(database_url, "Small")
    trace = Trace()
    trace.gate.set()  # a fast provider
    trace.install(monkeypatch)
    settings = make_settings(database_url, batch_size=BATCH, worker_concurrency=LANES)
    async with running_app(settings) as api, api.as_key(key) as client:  # no worker yet
        template = await create_template(client)
        contacts = [
            await create_contact(client, email=f"guest{i}@small.example", first_name="Bo")
            for i in range(100)
        ]
    async with running_app(settings, embedded_worker=True) as api, api.as_key(key) as client:
        await until(lambda: len(trace.handed_off(big)) >= 2 * BATCH, "A draining")
        response = await client.post(
            "/v1/messages",
            json={"template_id": template, "contact_ids": contacts, "variables": {"venue": "x"}},
        )
        assert response.status_code == 202, response.text
        accepted = trace.mark("accepted")
        big_org = await _org_of(sessions, list(big))
        async with sessions() as session:
            small = set(
                await session.scalars(
                    select(Delivery.id).where(Delivery.organization_id != big_org)
                )
            )
        assert len(small) == 100
        await until(lambda: len(trace.handed_off(small)) == 100, "B handed off")

    # A's hand-offs while B waited: from B's accept to B's last hand-off. (How much of A went
    # out before B's send was accepted depends on how long the accept took on a busy machine,
    # and says nothing about B waiting.)
    last_small_at = max(trace.handoff_position(i) for i in small)
    big_while_waiting = sum(
        len(big.intersection(batch))
        for at, batch in trace.handoffs
        if accepted < at < last_small_at
    )
    assert big_while_waiting < BACKLOG // 4, big_while_waiting
    # Deterministic given the batch size: B's 100 fit in B's turns of one 200-row claim, so
    # the first claim to see them takes them all (on PostgreSQL a concurrent claim skips
    # the rows that one has locked).
    taking_small = [c for c in trace.claims if small & set(c.ids)]
    assert len(taking_small) == 1


# -- the claim itself ------------------------------------------------------------------------


async def _claim(
    sessions: async_sessionmaker[AsyncSession], **kwargs: Any
) -> list[queue.ClaimedDelivery]:
    async with sessions() as session, session.begin():
        _, claimed = await queue.claim_batch(
            session, limit=kwargs.pop("limit", BATCH), lease_seconds=30.0, now=utc_now(), **kwargs
        )
    return claimed


def _by_org(claimed: list[queue.ClaimedDelivery], names: dict[uuid.UUID, str]) -> dict[str, int]:
    return dict(Counter(names[c.organization_id] for c in claimed))


async def _org_of(sessions: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]) -> uuid.UUID:
    async with sessions() as session:
        org = await session.scalar(select(Delivery.organization_id).where(Delivery.id == ids[0]))
    assert org is not None
    return org


async def test_one_organization_alone_gets_full_batches(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """One organization with due work gets whole batches, even while another has deliveries
    scheduled for later (their share is not held back for them)."""
    busy = await seed_deliveries(sessions, count=1000, org_name="busy")
    later = await seed_deliveries(sessions, count=50, org_name="later", email_domain="l.example")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(later))
            .values(status="scheduled", send_at=utc_now() + timedelta(hours=2))
        )
    for _ in range(3):
        claimed = await _claim(sessions)
        assert len(claimed) == BATCH
        assert {c.id for c in claimed} <= set(busy)


async def test_organizations_take_turns_within_a_priority(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Three organizations with work share a batch evenly whoever queued first; one that
    needs less than its share leaves the rest to the others."""
    names: dict[uuid.UUID, str] = {}
    for name, count in (("a", 5000), ("b", 5000), ("c", 30)):
        ids = await seed_deliveries(sessions, count=count, org_name=name, email_domain=f"{name}.x")
        names[await _org_of(sessions, ids)] = name
    first = await _claim(sessions, limit=90)
    assert _by_org(first, names) == {"a": 30, "b": 30, "c": 30}
    second = await _claim(sessions, limit=90)
    assert _by_org(second, names) == {"a": 45, "b": 45}


async def test_priority_beats_fair_share(sessions: async_sessionmaker[AsyncSession]) -> None:
    """An emergency of any organization goes before every organization's normal work, even
    when one organization's emergencies fill the batch."""
    names: dict[uuid.UUID, str] = {}
    normal = await seed_deliveries(sessions, count=300, org_name="normal", email_domain="n.x")
    names[await _org_of(sessions, normal)] = "normal"
    urgent = await seed_deliveries(
        sessions, count=250, org_name="urgent", priority=0, email_domain="u.x"
    )
    names[await _org_of(sessions, urgent)] = "urgent"
    claimed = await _claim(sessions)
    assert _by_org(claimed, names) == {"urgent": BATCH}
    claimed = await _claim(sessions)
    assert _by_org(claimed, names) == {"urgent": 50, "normal": 150}
    assert [c.priority for c in claimed[:50]] == [0] * 50  # sorted: emergencies first


async def test_emergency_lane_claims_only_emergencies(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """``max_priority=0`` takes the emergencies and leaves the backlog alone."""
    await seed_deliveries(sessions, count=500, org_name="bulk")
    urgent = await seed_deliveries(sessions, count=3, org_name="u", priority=0, email_domain="u.x")
    claimed = await _claim(sessions, max_priority=0)
    assert {c.id for c in claimed} == set(urgent)
    assert await _claim(sessions, max_priority=0) == []


async def test_fifo_when_fair_share_is_off(sessions: async_sessionmaker[AsyncSession]) -> None:
    """With ``fair=False`` a priority is taken oldest first, whoever it belongs to."""
    first = await seed_deliveries(sessions, count=300, org_name="first")
    await seed_deliveries(sessions, count=300, org_name="second", email_domain="s.x")
    claimed = await _claim(sessions, fair=False)
    assert {c.id for c in claimed} <= set(first)


async def test_notification_carries_the_priority(postgres_url: str) -> None:
    """On PostgreSQL the wake-up names the priority, so only an emergency wakes the
    emergency lane of a worker in another process."""
    woken: list[int | None] = []
    stop = await listen_for_wakeups(postgres_url, woken.append)
    assert stop is not None
    engine = create_engine(postgres_url)
    try:
        for priority in (0, None, 2):
            async with create_session_factory(engine)() as session, session.begin():
                await notify_workers(session, priority=priority)
        await until(lambda: len(woken) == 3, "notifications")
    finally:
        await stop()
        await engine.dispose()
    assert woken == [0, None, 2]
