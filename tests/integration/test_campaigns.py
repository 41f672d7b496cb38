"""Campaigns end to end, on SQLite and PostgreSQL: validation, preview, fan-out in batches,
per-zone send times, pause/resume, cancel half-way, edits until the first claim, crash
safety, and recurring reminders that stop when a guest RSVPs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.app import create_worker
from guestcomms.audiences import selection
from guestcomms.campaigns import fanout
from guestcomms.campaigns.fanout import FanoutRunner, fan_out, take
from guestcomms.campaigns.models import Campaign
from guestcomms.config import Settings
from guestcomms.db import queue
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.organizations.models import Organization
from guestcomms.outbox.models import OutboxMessage
from tests.support import (
    Api,
    create_contact,
    create_key,
    create_template,
    make_settings,
    running_app,
)

VENUE = {"venue": "Lake Como"}
FUTURE = {"at": "2031-01-01T10:00:00Z"}


@dataclass
class Setup:
    """A running app, a key's client, the database's sessions."""

    settings: Settings
    api: Api
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    template: str


@contextlib.asynccontextmanager
async def setup(database_url: str, org: str = "Ana & Ben") -> AsyncIterator[Setup]:
    """The app (no embedded worker: tests run the fan-out and the worker by hand)."""
    settings = make_settings(database_url)
    key = await create_key(database_url, org)
    engine = create_engine(database_url)
    try:
        async with running_app(settings) as api, api.as_key(key) as client:
            template = await create_template(client)
            yield Setup(settings, api, client, create_session_factory(engine), template)
    finally:
        await engine.dispose()


async def _contacts(client: httpx.AsyncClient, count: int, **fields: Any) -> list[str]:
    return [
        await create_contact(client, email=f"guest{i}-{uuid.uuid4().hex[:6]}@example.com", **fields)
        for i in range(count)
    ]


async def _create(client: httpx.AsyncClient, template: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "Invitation", "template_id": template, "variables": VENUE, **fields}
    response = await client.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _get(client: httpx.AsyncClient, campaign: str) -> dict[str, Any]:
    response = await client.get(f"/v1/campaigns/{campaign}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _start(client: httpx.AsyncClient, campaign: str) -> dict[str, Any]:
    response = await client.post(f"/v1/campaigns/{campaign}/start")
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def _deliveries(
    sessions: async_sessionmaker[AsyncSession], campaign: dict[str, Any]
) -> list[Delivery]:
    message_id = from_public(IdKind.MESSAGE, campaign["message_id"])
    async with sessions() as session:
        rows = await session.scalars(
            select(Delivery).where(Delivery.message_id == message_id).order_by(Delivery.id)
        )
        return list(rows)


async def _lease(sessions: async_sessionmaker[AsyncSession], campaign: str) -> fanout.Lease:
    lease = await take(sessions, from_public(IdKind.CAMPAIGN, campaign))
    assert lease is not None
    return lease


async def test_campaign_is_validated_when_created(database_url: str) -> None:
    """Each mistake is a 422 naming its field, and nothing is stored."""
    async with setup(database_url) as s:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"template_id": "tpl_" + "0" * 32}, "template_id"),
            ({"variables": {}}, "variables.venue"),
            ({"variables": {**VENUE, "dress": "black tie"}}, "variables.dress"),
            ({"filter": 'tags has "family" and'}, "filter"),
            ({"filter": 'rsvp = "yes"'}, "filter"),  # an event guest field without an event
            ({"schedule": {"date": "2030-06-01"}}, "schedule.local_time"),
            ({"schedule": {"days_before_event": 3, "local_time": "10:00"}}, "event_id"),
            ({"channels": ["sms"]}, "channels[0]"),
            ({"recurrence": {"every_days": 2}}, "recurrence"),
            ({"event_id": "evt_" + "1" * 32}, "event_id"),
        ]
        for fields, field in cases:
            body = {"name": "x", "template_id": s.template, "variables": VENUE, **fields}
            response = await s.client.post("/v1/campaigns", json=body)
            assert response.status_code == 422, (fields, response.text)
            assert response.json()["field"] == field, (fields, response.json())
        listed = (await s.client.get("/v1/campaigns")).json()
        assert listed["items"] == []


async def test_create_preview_start_and_progress(database_url: str) -> None:
    """A campaign to the family fans out into one queued delivery each, which the worker
    sends; the campaign shows its progress and counts on the way."""
    async with setup(database_url) as s:
        family = await _contacts(s.client, 3, tags=["family"])
        await _contacts(s.client, 2, tags=["friends"])
        campaign = await _create(s.client, s.template, filter='tags has "family"')
        assert campaign["status"] == "draft"
        assert campaign["message_id"] is None
        preview = (await s.client.post(f"/v1/campaigns/{campaign['id']}/preview")).json()
        assert preview["count"] == 3
        assert sorted(g["contact_id"] for g in preview["sample"]) == sorted(family)
        assert [z["timezone"] for z in preview["schedule"]] == ["UTC"]
        started = await _start(s.client, campaign["id"])
        assert started["status"] == "running"
        assert started["total"] == 3
        assert started["processed"] == 0
        again = await s.client.post(f"/v1/campaigns/{campaign['id']}/start")
        assert again.status_code == 409
        runner = FanoutRunner(sessions=s.sessions, batch_size=2, poll_interval_seconds=0.05)
        assert await runner.run_until_idle() == 1
        done = await _get(s.client, campaign["id"])
        assert done["status"] == "completed"
        assert (done["total"], done["processed"], done["created"]) == (3, 3, 3)
        assert done["progress"] == 1.0
        assert done["counts"] == {"queued": 3}
        async with create_worker(s.settings) as worker:
            assert await worker.run_until_idle() == 3
        assert (await _get(s.client, campaign["id"]))["counts"] == {"sent": 3}
        message = (await s.client.get(f"/v1/messages/{done['message_id']}")).json()
        assert message["recipient_count"] == 3
        assert sorted(d["contact_id"] for d in message["deliveries"]) == sorted(family)


async def test_local_time_schedule_gives_each_zone_its_own_instant(database_url: str) -> None:
    """10:00 on a date is 10:00 in each guest's zone; a guest without one falls back to the
    event's zone, and without an event to the organization's."""
    async with setup(database_url) as s:
        async with s.sessions() as session, session.begin():
            await session.execute(update(Organization).values(timezone="Asia/Tokyo"))
        zones = ["Pacific/Auckland", "America/Los_Angeles", "Europe/London", None]
        contacts = {
            zone: await create_contact(
                s.client, email=f"{zone or 'none'}@example.com".replace("/", "-"), timezone=zone
            )
            for zone in zones
        }
        event = await s.client.post(
            "/v1/events",
            json={"name": "Wedding", "date": "2030-06-20", "timezone": "America/New_York"},
        )
        assert event.status_code == 201, event.text
        event_id = event.json()["id"]
        for contact in contacts.values():
            added = await s.client.post(
                f"/v1/events/{event_id}/guests", json={"contact_id": contact}
            )
            assert added.status_code == 201, added.text
        schedule = {"date": "2030-06-01", "local_time": "10:00"}
        expected = {
            "Pacific/Auckland": datetime(2030, 5, 31, 22, tzinfo=UTC),  # NZST, +12
            "America/Los_Angeles": datetime(2030, 6, 1, 17, tzinfo=UTC),  # PDT, -7
            "Europe/London": datetime(2030, 6, 1, 9, tzinfo=UTC),  # BST, +1
        }
        for with_event, fallback, instant in (
            (True, "America/New_York", datetime(2030, 6, 1, 14, tzinfo=UTC)),  # EDT, -4
            (False, "Asia/Tokyo", datetime(2030, 6, 1, 1, tzinfo=UTC)),  # JST, +9
        ):
            fields: dict[str, Any] = {"schedule": schedule}
            if with_event:
                fields["event_id"] = event_id
            campaign = await _create(s.client, s.template, **fields)
            preview = (await s.client.post(f"/v1/campaigns/{campaign['id']}/preview")).json()
            shown = {z["timezone"]: z["instants"][0] for z in preview["schedule"]}
            wanted = {**expected, fallback: instant}
            assert {k: datetime.fromisoformat(v) for k, v in shown.items()} == wanted
            started = await _start(s.client, campaign["id"])
            await FanoutRunner(sessions=s.sessions, batch_size=3).run_until_idle()
            rows = await _deliveries(s.sessions, started | await _get(s.client, campaign["id"]))
            by_contact = {r.contact_id: r for r in rows}
            assert len(rows) == 4
            for zone, contact in contacts.items():
                row = by_contact[from_public(IdKind.CONTACT, contact)]
                assert row.send_at == wanted[zone or fallback], zone
                assert row.status == "scheduled"


async def test_cancel_half_way_leaves_no_delivery_sent_after_the_cancel(
    database_url: str,
) -> None:
    """Fan out 3 batches of 10 out of 60 (a worker sending between them, another holding a
    claim), cancel: the fan-out writes nothing more, nothing reaches the provider after the
    cancel committed, and every delivery is cancelled or was claimed before it."""
    async with setup(database_url) as s:
        await _contacts(s.client, 60)
        campaign = await _create(s.client, s.template)
        await _start(s.client, campaign["id"])
        lease = await _lease(s.sessions, campaign["id"])
        async with create_worker(s.settings) as worker:
            await fan_out(s.sessions, lease, batch_size=10, max_batches=2)
            assert await worker.run_until_idle() == 20
            await fan_out(s.sessions, lease, batch_size=10, max_batches=1)
            # a worker has claimed five of the third batch and is still sending them
            async with s.sessions() as session, session.begin():
                _, in_flight = await queue.claim_batch(
                    session, limit=5, lease_seconds=30, now=utc_now()
                )
            assert len(in_flight) == 5
            response = await s.client.post(f"/v1/campaigns/{campaign['id']}/cancel")
            cancelled_at = utc_now()
            assert response.status_code == 200, response.text
            assert response.json() == {
                "id": campaign["id"],
                "status": "cancelled",
                "changed": 5,
                "not_changed": 25,
            }
            assert await fan_out(s.sessions, lease, batch_size=10) is None
            assert await FanoutRunner(sessions=s.sessions, batch_size=10).run_until_idle() == 0
            assert await worker.run_until_idle() == 0
        view = await _get(s.client, campaign["id"])
        assert (view["status"], view["processed"], view["created"]) == ("cancelled", 30, 30)
        assert view["counts"] == {"sent": 20, "sending": 5, "cancelled": 5}
        rows = await _deliveries(s.sessions, view)
        claimed_before = {d.id for d in in_flight}
        async with s.sessions() as session:
            handed = list(await session.scalars(select(OutboxMessage)))
            first_cancel = await session.scalar(
                select(func.min(DeliveryEvent.created_at)).where(DeliveryEvent.type == "cancelled")
            )
    assert len(handed) == 20
    assert all(h.created_at < cancelled_at for h in handed)
    assert first_cancel is not None
    assert all(h.created_at <= first_cancel for h in handed)
    for row in rows:
        assert row.status == "cancelled" or row.attempts == 1, row.status
        assert row.status != "cancelled" or row.id not in claimed_before


async def test_edit_before_first_claim_fans_out_again_and_after_is_refused(
    database_url: str,
) -> None:
    """An edit deletes the unclaimed deliveries and the fan-out runs again with the new
    audience; once a worker claimed one, an edit is a 409 and changes nothing."""
    async with setup(database_url) as s:
        await _contacts(s.client, 2, tags=["family"])
        await _contacts(s.client, 3, tags=["friends"])
        campaign = await _create(s.client, s.template, filter='tags has "family"', schedule=FUTURE)
        await _start(s.client, campaign["id"])
        runner = FanoutRunner(sessions=s.sessions, batch_size=10)
        await runner.run_until_idle()
        assert (await _get(s.client, campaign["id"]))["counts"] == {"scheduled": 2}
        response = await s.client.patch(
            f"/v1/campaigns/{campaign['id']}", json={"filter": 'tags has "friends"'}
        )
        assert response.status_code == 200, response.text
        edited = response.json()
        assert (edited["status"], edited["total"], edited["created"]) == ("running", 3, 0)
        assert edited["counts"] == {}
        await runner.run_until_idle()
        view = await _get(s.client, campaign["id"])
        assert (view["status"], view["created"], view["counts"]) == (
            "completed",
            3,
            {"scheduled": 3},
        )
        async with s.sessions() as session, session.begin():
            _, claimed = await queue.claim_batch(
                session, limit=1, lease_seconds=30, now=datetime(2032, 1, 1, tzinfo=UTC)
            )
        assert len(claimed) == 1
        refused = await s.client.patch(
            f"/v1/campaigns/{campaign['id']}", json={"variables": {"venue": "Paris"}}
        )
        assert refused.status_code == 409, refused.text
        after = await _get(s.client, campaign["id"])
        assert after["counts"] == {"scheduled": 2, "sending": 1}
        assert after["variables"] == VENUE
        assert (await s.client.delete(f"/v1/campaigns/{campaign['id']}")).status_code == 409
        renamed = await s.client.patch(f"/v1/campaigns/{campaign['id']}", json={"name": "Later"})
        assert renamed.status_code == 200, renamed.text
        assert (renamed.json()["name"], renamed.json()["counts"]) == (
            "Later",
            {"scheduled": 2, "sending": 1},
        )


async def test_pause_holds_deliveries_and_resume_releases_them(database_url: str) -> None:
    """A paused campaign neither fans out further nor sends; resumed, it finishes both."""
    async with setup(database_url) as s:
        await _contacts(s.client, 6)
        campaign = await _create(s.client, s.template)
        await _start(s.client, campaign["id"])
        await fan_out(
            s.sessions, await _lease(s.sessions, campaign["id"]), batch_size=4, max_batches=1
        )
        paused = await s.client.post(f"/v1/campaigns/{campaign['id']}/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["changed"] == 4
        runner = FanoutRunner(sessions=s.sessions, batch_size=4)
        async with create_worker(s.settings) as worker:
            assert await runner.run_until_idle() == 0
            assert await worker.run_until_idle() == 0
            view = await _get(s.client, campaign["id"])
            assert (view["status"], view["processed"], view["counts"]) == ("paused", 4, {"held": 4})
            assert (await s.client.post(f"/v1/campaigns/{campaign['id']}/pause")).status_code == 409
            resumed = await s.client.post(f"/v1/campaigns/{campaign['id']}/resume")
            assert resumed.status_code == 200, resumed.text
            assert (resumed.json()["status"], resumed.json()["changed"]) == ("running", 4)
            assert await runner.run_until_idle() == 1
            assert await worker.run_until_idle() == 6
        view = await _get(s.client, campaign["id"])
        assert (view["status"], view["counts"]) == ("completed", {"sent": 6})
        events = (await s.client.get(f"/v1/messages/{view['message_id']}")).json()["deliveries"]
        first = min(events, key=lambda d: d["id"])
        assert [e["type"] for e in first["events"]] == ["created", "held", "resumed", "sent"]


async def test_rerun_after_a_crash_and_a_second_runner_never_write_a_guest_twice(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner dies after one batch holding its lease: a second cannot take the campaign
    until the lease expires, then goes on from the cursor; the first, back late, writes
    nothing. The runner asks for one bounded page at a time."""
    pages: list[tuple[int, int]] = []
    real_page = selection.page

    async def recording_page(*args: Any, limit: int, **kwargs: Any) -> list[selection.Recipient]:
        got = await real_page(*args, limit=limit, **kwargs)
        pages.append((limit, len(got)))
        return got

    monkeypatch.setattr(fanout, "page", recording_page)
    async with setup(database_url) as s:
        contacts = await _contacts(s.client, 11)
        campaign = await _create(s.client, s.template, schedule=FUTURE)
        await _start(s.client, campaign["id"])
        first = await _lease(s.sessions, campaign["id"])
        await fan_out(s.sessions, first, batch_size=4, max_batches=1)  # then "crashes"
        assert await take(s.sessions, first.campaign_id) is None
        async with s.sessions() as session, session.begin():
            await session.execute(
                update(Campaign).values(lease_until=utc_now() - timedelta(seconds=1))
            )
        runner = FanoutRunner(sessions=s.sessions, batch_size=4)
        assert await runner.run_until_idle() == 1
        assert await fan_out(s.sessions, first, batch_size=4) is None
        view = await _get(s.client, campaign["id"])
        rows = await _deliveries(s.sessions, view)
    assert (view["status"], view["processed"], view["created"]) == ("completed", 11, 11)
    assert sorted(r.contact_id for r in rows) == sorted(
        from_public(IdKind.CONTACT, c) for c in contacts
    )
    assert pages == [(4, 4), (4, 4), (4, 3)]


async def _guest(client: httpx.AsyncClient, event: str, email: str) -> str:
    contact = await create_contact(client, email=email)
    response = await client.post(f"/v1/events/{event}/guests", json={"contact_id": contact})
    assert response.status_code == 201, response.text
    return contact


async def test_a_guest_who_rsvps_gets_none_of_the_remaining_reminders(database_url: str) -> None:
    """Reminders every 3 days while the RSVP is pending: after the first, Ana says yes and
    gets no more; Ben, still pending, gets all four."""
    async with setup(database_url) as s:
        day = (utc_now() + timedelta(days=40)).date().isoformat()
        event = await s.client.post(
            "/v1/events", json={"name": "Wedding", "date": day, "timezone": "Europe/Lisbon"}
        )
        event_id = event.json()["id"]
        ana = await _guest(s.client, event_id, "ana@example.com")
        ben = await _guest(s.client, event_id, "ben@example.com")
        campaign = await _create(
            s.client,
            s.template,
            event_id=event_id,
            schedule={"days_before_event": 30, "local_time": "10:00"},
            recurrence={"every_days": 3, "count": 4, "while": 'rsvp = "pending"'},
        )
        assert campaign["cancellation_key"] == campaign["id"]
        await _start(s.client, campaign["id"])
        await FanoutRunner(sessions=s.sessions).run_until_idle()
        view = await _get(s.client, campaign["id"])
        assert view["counts"] == {"scheduled": 8}
        rows = await _deliveries(s.sessions, view)
        first_time = min(r.send_at for r in rows)
        ana_key = f"{campaign['id']}:{from_public(IdKind.CONTACT, ana).hex}"
        assert sum(r.cancellation_key == ana_key for r in rows) == 4

        async def due(before: datetime) -> None:
            async with s.sessions() as session, session.begin():
                await session.execute(
                    update(Delivery)
                    .where(Delivery.send_at <= before, Delivery.status == "scheduled")
                    .values(send_at=utc_now() - timedelta(seconds=1))
                )

        async with create_worker(s.settings) as worker:
            await due(first_time)
            assert await worker.run_until_idle() == 2
            response = await s.client.post(
                f"/v1/events/{event_id}/guests/{ana}/rsvp", json={"rsvp": "yes"}
            )
            assert response.status_code == 200, response.text
            await due(datetime(2100, 1, 1, tzinfo=UTC))
            assert await worker.run_until_idle() == 3
        async with s.sessions() as session:
            outbox = list(await session.scalars(select(OutboxMessage.recipient)))
        assert sorted(outbox) == ["ana@example.com"] + ["ben@example.com"] * 4
        view = await _get(s.client, campaign["id"])
        assert view["counts"] == {"sent": 5, "cancelled": 3}
        message = (await s.client.get(f"/v1/messages/{view['message_id']}")).json()
        cancelled = [d for d in message["deliveries"] if d["status"] == "cancelled"]
        assert {d["contact_id"] for d in cancelled} == {ana}
        reason = cancelled[0]["events"][-1]["detail"]["reason"]
        assert 'rsvp = "pending"' in reason
        del ben


async def test_a_contact_change_that_ends_the_condition_stops_the_reminders(
    database_url: str,
) -> None:
    """The "while" condition may read contact fields: tagging Ana "answered" through the
    contacts API cancels her remaining reminders, and Ben's stay scheduled."""
    async with setup(database_url) as s:
        ana, _ben = await _contacts(s.client, 2)
        campaign = await _create(
            s.client,
            s.template,
            schedule={"at": (utc_now() + timedelta(days=5)).isoformat()},
            recurrence={"every_days": 2, "count": 3, "while": 'not (tags has "answered")'},
        )
        await _start(s.client, campaign["id"])
        await FanoutRunner(sessions=s.sessions).run_until_idle()
        response = await s.client.patch(f"/v1/contacts/{ana}", json={"tags": ["answered"]})
        assert response.status_code == 200, response.text
        rows = await _deliveries(s.sessions, await _get(s.client, campaign["id"]))
        ana_key = from_public(IdKind.CONTACT, ana)
        assert {r.status for r in rows if r.contact_id == ana_key} == {"cancelled"}
        assert [r.status for r in rows if r.contact_id != ana_key] == ["scheduled"] * 3


async def test_cancel_by_key_cancels_only_the_callers_unclaimed_deliveries(
    database_url: str,
) -> None:
    """POST /v1/deliveries/cancel stops one guest's reminders; another organization sending
    the same key cancels nothing of ours."""
    async with setup(database_url) as s:
        day = (utc_now() + timedelta(days=40)).date().isoformat()
        event_id = (
            await s.client.post("/v1/events", json={"name": "W", "date": day, "timezone": "UTC"})
        ).json()["id"]
        ana = await _guest(s.client, event_id, "ana@example.com")
        await _guest(s.client, event_id, "ben@example.com")
        campaign = await _create(
            s.client,
            s.template,
            event_id=event_id,
            schedule={"days_before_event": 30, "local_time": "10:00"},
            recurrence={"every_days": 3, "count": 2, "while": 'rsvp = "pending"'},
        )
        await _start(s.client, campaign["id"])
        await FanoutRunner(sessions=s.sessions).run_until_idle()
        key = f"{campaign['id']}:{from_public(IdKind.CONTACT, ana).hex}"
        other = await create_key(database_url, "Mallory")
        async with s.api.as_key(other) as mallory:
            theirs = await mallory.post("/v1/deliveries/cancel", json={"cancellation_key": key})
        assert theirs.status_code == 200, theirs.text
        assert theirs.json()["cancelled"] == 0
        mine = await s.client.post("/v1/deliveries/cancel", json={"cancellation_key": key})
        assert mine.json() == {"cancellation_key": key, "cancelled": 2}
        view = await _get(s.client, campaign["id"])
        assert view["counts"] == {"scheduled": 2, "cancelled": 2}


async def test_the_server_fans_out_and_sends_a_started_campaign(database_url: str) -> None:
    """In `serve` (the app with its embedded worker) a started campaign is picked up by the
    fan-out runner beside the worker, and its deliveries are sent without anything else."""
    settings = make_settings(database_url, campaign_batch_size=2)
    key = await create_key(database_url, "Served")
    async with running_app(settings, embedded_worker=True) as api, api.as_key(key) as client:
        await _contacts(client, 5)
        campaign = await _create(client, await create_template(client))
        await _start(client, campaign["id"])
        for _ in range(200):
            view = await _get(client, campaign["id"])
            if view["counts"] == {"sent": 5}:
                break
            await asyncio.sleep(0.05)
    assert (view["status"], view["processed"], view["created"]) == ("completed", 5, 5)
    assert view["counts"] == {"sent": 5}
