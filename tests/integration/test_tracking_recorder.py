"""The tracking hit recorder (``tracking/recorder.py``): hits are written in batches, decided
as if they had come one by one, and every hit handed in before shutdown is stored; a burst of
concurrent pixel fetches through the app is recorded in full, each with its verdict."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.tracking import recorder as recorder_module
from guestcomms.tracking.machine import MachineReason, MachineVerdict, Network
from guestcomms.tracking.models import TrackingEvent
from guestcomms.tracking.recorder import HitRecorder, RecorderClosedError
from guestcomms.tracking.rewrite import PIXEL_GIF
from guestcomms.tracking.service import Hit, Visitor
from guestcomms.tracking.tokens import ClickClaim, OpenClaim, make_open_token, tracking_key
from tests.support import make_settings, running_app, seed_deliveries

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5"
APPLE_MPP = "Mozilla/5.0"
CURL = "curl/8.5.0"
GMAIL_PROXY = "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"
URL = "https://anaben.example/rsvp"
HUMAN = MachineVerdict(machine=False)
SENT_AGO = timedelta(hours=1)  # long enough for every timing rule to call a person a person


@dataclass
class Seeded:
    """Deliveries of one organization, sent an hour ago."""

    organization_id: uuid.UUID
    deliveries: list[uuid.UUID]
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test's database."""
    made = create_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


async def _seed(sessions: async_sessionmaker[AsyncSession], count: int) -> Seeded:
    deliveries = await seed_deliveries(sessions, count=count)
    sent = utc_now() - SENT_AGO
    async with sessions() as session, session.begin():
        org = await session.scalar(select(Delivery.organization_id).limit(1))
        assert org is not None
        await session.execute(
            insert(DeliveryEvent),
            [
                {"organization_id": org, "delivery_id": d, "type": "sent", "created_at": sent}
                for d in deliveries
            ],
        )
    return Seeded(organization_id=org, deliveries=deliveries, sessions=sessions)


def _open(seeded: Seeded, index: int, agent: str | None) -> Hit:
    claim = OpenClaim(organization_id=seeded.organization_id, delivery_id=seeded.deliveries[index])
    return Hit(claim=claim, visitor=Visitor(user_agent=agent, ip="198.51.100.7"), at=utc_now())


def _click(seeded: Seeded, index: int, link: int, *, at: datetime | None = None) -> Hit:
    claim = ClickClaim(
        organization_id=seeded.organization_id,
        delivery_id=seeded.deliveries[index],
        link_index=link,
        url=f"{URL}?link={link}",
    )
    return Hit(claim=claim, visitor=Visitor(user_agent=BROWSER, ip=None), at=at or utc_now())


async def _stored(sessions: async_sessionmaker[AsyncSession]) -> Sequence[TrackingEvent]:
    async with sessions() as session:
        return (await session.scalars(select(TrackingEvent).order_by(TrackingEvent.id))).all()


def _machine(reason: MachineReason) -> MachineVerdict:
    return MachineVerdict(machine=True, reason=reason)


async def test_hits_handed_in_before_close_are_written_and_decided_in_order(
    engine: AsyncEngine,
) -> None:
    """Hits queued and not yet written when the recorder closes are all stored before
    ``close`` returns; one batch is decided in the order the hits came (the fourth distinct
    link of a delivery is a click-burst, and so is a repeat of one of those links after it);
    a hit naming an unknown delivery, or a delivery under another organization, is answered
    ``None`` and not stored, without costing the others; after close, hits are refused."""
    seeded = await _seed(create_session_factory(engine), count=3)
    recorder = HitRecorder(seeded.sessions)
    stranger = Seeded(uuid.uuid4(), seeded.deliveries, seeded.sessions)  # other organization
    unknown = Seeded(seeded.organization_id, [uuid.uuid4()], seeded.sessions)
    hits = [
        _open(seeded, 0, BROWSER),
        _open(seeded, 0, APPLE_MPP),
        _open(unknown, 0, BROWSER),
        _open(seeded, 1, None),
        _open(stranger, 2, BROWSER),
        *(_click(seeded, 2, link) for link in (0, 1, 2, 3, 1)),
    ]
    answers = [recorder.submit(hit) for hit in hits]  # nothing written yet
    await recorder.close()
    with pytest.raises(RecorderClosedError):
        recorder.submit(_open(seeded, 0, BROWSER))
    burst = _machine(MachineReason.CLICK_BURST)
    assert [answer.result() for answer in answers] == [
        HUMAN,
        _machine(MachineReason.APPLE_MPP),
        None,
        _machine(MachineReason.NO_USER_AGENT),
        None,
        HUMAN,
        HUMAN,
        HUMAN,
        burst,
        burst,
    ]
    rows = await _stored(seeded.sessions)
    assert [(r.delivery_id, r.kind, r.link_index, r.machine_reason) for r in rows] == [
        (seeded.deliveries[0], "open", None, None),
        (seeded.deliveries[0], "open", None, "apple-mpp"),
        (seeded.deliveries[1], "open", None, "no-user-agent"),
        *((seeded.deliveries[2], "click", i, None) for i in (0, 1, 2)),
        (seeded.deliveries[2], "click", 3, "click-burst"),
        (seeded.deliveries[2], "click", 1, "click-burst"),
    ]
    assert {r.organization_id for r in rows} == {seeded.organization_id}
    assert [r.created_at for r in rows] == sorted(r.created_at for r in rows)


async def test_burst_window_counts_stored_clicks_and_earlier_clicks_of_the_batch(
    engine: AsyncEngine,
) -> None:
    """With batches of two, the fourth distinct link clicked within the window is a
    click-burst although two of the earlier clicks were stored by another batch; a click
    stored before the window opened is not counted."""
    seeded = await _seed(create_session_factory(engine), count=1)
    old = utc_now() - timedelta(seconds=45)  # outside the 30-second window of the clicks below
    recorder = HitRecorder(seeded.sessions, max_batch=2)
    assert await recorder.record(_click(seeded, 0, 9, at=old)) == HUMAN
    answers = [recorder.submit(_click(seeded, 0, link)) for link in (0, 1, 2, 3)]
    await recorder.close()
    assert [a.result() for a in answers] == [
        HUMAN,
        HUMAN,
        HUMAN,
        _machine(MachineReason.CLICK_BURST),
    ]
    assert [r.link_index for r in await _stored(seeded.sessions)] == [9, 0, 1, 2, 3]


async def test_a_hit_that_cannot_be_stored_does_not_cost_its_batch(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a batch fails, each of its hits is written alone: the one that fails again
    raises in its caller, the others are stored and answered."""
    seeded = await _seed(create_session_factory(engine), count=2)
    real = recorder_module.record_hits

    async def failing_on_poison(
        session: AsyncSession, hits: Sequence[Hit], *, networks: Sequence[Network] = ()
    ) -> list[MachineVerdict | None]:
        if any(hit.visitor.user_agent == "poison" for hit in hits):
            raise RuntimeError("cannot store this one")
        return await real(session, hits, networks=networks)

    monkeypatch.setattr(recorder_module, "record_hits", failing_on_poison)
    recorder = HitRecorder(seeded.sessions)
    answers = [
        recorder.submit(_open(seeded, 0, BROWSER)),
        recorder.submit(_open(seeded, 1, "poison")),
        recorder.submit(_open(seeded, 1, BROWSER)),
    ]
    await recorder.close()
    assert answers[0].result() == HUMAN
    assert answers[2].result() == HUMAN
    with pytest.raises(RuntimeError, match="cannot store this one"):
        answers[1].result()
    rows = await _stored(seeded.sessions)
    assert [(r.delivery_id, r.user_agent) for r in rows] == [
        (seeded.deliveries[0], BROWSER),
        (seeded.deliveries[1], BROWSER),
    ]


async def test_a_burst_of_concurrent_pixel_fetches_is_recorded_in_full(
    database_url: str,
) -> None:
    """160 pixel fetches at once through the app, across 20 deliveries and four kinds of user
    agent, are each answered with the uncacheable GIF and stored once with their user agent's
    verdict; fetches of a token under another organization are a 404 problem and store
    nothing; the tracking routes are not in the OpenAPI document and refuse HEAD."""
    settings = make_settings(database_url)
    engine = create_engine(database_url)
    try:
        seeded = await _seed(create_session_factory(engine), count=20)
    finally:
        await engine.dispose()
    key = tracking_key(settings)
    agents = {
        BROWSER: None,
        APPLE_MPP: "apple-mpp",
        CURL: "scanner-ua",
        GMAIL_PROXY: None,  # a proxy fetch an hour after sending: the guest opened it
    }
    fetches = [
        (make_open_token(key, organization_id=seeded.organization_id, delivery_id=d), agent)
        for d in seeded.deliveries
        for agent in agents
        for _ in range(2)
    ]
    foreign = make_open_token(key, organization_id=uuid.uuid4(), delivery_id=seeded.deliveries[0])
    async with running_app(settings) as api:
        responses = await asyncio.gather(
            *(
                api.client.get(f"/t/o/{token}.gif", headers={"User-Agent": agent})
                for token, agent in [*fetches, *[(foreign, BROWSER)] * 5]
            )
        )
        head = await api.client.head(f"/t/o/{fetches[0][0]}.gif")
        documented = (await api.client.get("/openapi.json")).json()["paths"]
    pixels, refused = responses[: len(fetches)], responses[len(fetches) :]
    for response in pixels:
        assert response.status_code == 200, response.text
        assert response.content == PIXEL_GIF
        assert response.headers["content-type"] == "image/gif"
        assert "no-store" in response.headers["cache-control"]
    for response in refused:
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/not-found"
    assert head.status_code == 405
    assert not [path for path in documented if path.startswith("/t/")]
    engine = create_engine(database_url)
    try:
        rows = await _stored(create_session_factory(engine))
    finally:
        await engine.dispose()
    assert len(rows) == len(fetches) == 160
    stored = sorted((r.delivery_id.hex, r.user_agent or "", r.machine_reason or "") for r in rows)
    expected = sorted(
        (delivery.hex, agent, reason or "")
        for delivery in seeded.deliveries
        for agent, reason in agents.items()
        for _ in range(2)
    )
    assert stored == expected
    assert all(r.machine == (r.machine_reason is not None) for r in rows)
