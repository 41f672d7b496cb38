"""Quiet hours and frequency caps in the send path: held deliveries are deferred (scheduled
for the next allowed instant, with a ``deferred`` event, no attempt used), never dropped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from guestcomms.app import create_worker
from guestcomms.channels.simulator import ProviderSimulator, SimulatorCredentials
from guestcomms.config import Settings
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.engine import pacing
from guestcomms.messages.models import Delivery
from guestcomms.organizations.models import Organization
from tests.support import create_contact, create_key, make_settings, running_app

# 23:00 EST on 14 January 2030 (in the future, so a deferred row is not due again at once)
LATE_EVENING = datetime(2030, 1, 15, 4, 0, tzinfo=UTC)
NEXT_MORNING = datetime(2030, 1, 15, 13, 0, tzinfo=UTC)  # 08:00 EST
TEMPLATE = {
    "name": "reminder",
    "subject": "Reminder for {{ first_name }}",
    "text": "See you tomorrow.",
    "channel_content": {"sms": {"body": "{{ first_name }}: see you tomorrow."}},
}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the instant pacing decides at (the queue keeps the real clock)."""

    def set_now(instant: datetime) -> None:
        monkeypatch.setattr(pacing, "utc_now", lambda: instant)

    return set_now


@pytest.fixture
async def setup(database_url: str) -> AsyncIterator[tuple[Settings, httpx.AsyncClient, Any]]:
    """An organization with a Twilio account on the simulator and an SMS template; the
    server's default quiet hours (08:00-21:00) on."""
    settings = make_settings(database_url, quiet_hours="08:00-21:00")
    key = await create_key(database_url, "Quiet")
    creds = SimulatorCredentials()
    async with (
        ProviderSimulator() as simulator,
        running_app(settings) as api,
        api.as_key(key) as client,
    ):
        added = await client.post(
            "/v1/providers",
            json={
                "name": "twilio",
                "kind": "twilio_sms",
                "settings": {"base_url": simulator.base_url, "sender": "+12025550100"},
                "credentials": {
                    "account_sid": creds.twilio_account_sid,
                    "auth_token": creds.twilio_auth_token,
                },
            },
        )
        assert added.status_code == 201, added.text
        yield settings, client, simulator


async def _send(client: httpx.AsyncClient, contact: str, **fields: Any) -> dict[str, Any]:
    template = await client.post("/v1/templates", json={**TEMPLATE, "name": uuid.uuid4().hex})
    assert template.status_code == 201, template.text
    body = {"template_id": template.json()["id"], "contact_ids": [contact], **fields}
    sent = await client.post("/v1/messages", json=body)
    assert sent.status_code == 202, sent.text
    view = (await client.get(f"/v1/messages/{sent.json()['id']}")).json()
    [delivery] = view["deliveries"]
    return dict(delivery)


async def _delivery(client: httpx.AsyncClient, delivery_id: str) -> dict[str, Any]:
    got = await client.get(f"/v1/deliveries/{delivery_id}")
    assert got.status_code == 200, got.text
    return dict(got.json())


async def _make_due(settings: Settings, delivery_id: str) -> None:
    """Move time forward for the queue: the deferred delivery is due now."""
    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await session.execute(
                update(Delivery)
                .where(Delivery.id == from_public(IdKind.DELIVERY, delivery_id))
                .values(send_at=utc_now())
            )
    finally:
        await engine.dispose()


async def _set_org(config: Settings, **values: Any) -> None:
    """Set columns of the (only) organization: its zone, its settings."""
    engine = create_engine(config.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await session.execute(update(Organization).values(**values))
    finally:
        await engine.dispose()


async def test_an_sms_due_at_23_00_goes_out_at_08_00_the_next_morning(
    setup: tuple[Settings, httpx.AsyncClient, Any], clock: Callable[[datetime], None]
) -> None:
    """Acceptance: a guest in New York, an SMS due at 23:00 local: after the worker runs it
    is scheduled for 08:00 EST the next morning (13:00 UTC), with a deferred event and no
    attempt used, not sent and not failed; when that time comes, it is sent."""
    settings, client, simulator = setup
    guest = await create_contact(
        client, phone="+12025550123", first_name="Ann", timezone="America/New_York"
    )
    delivery = await _send(client, guest, channels=["sms"])
    clock(LATE_EVENING)
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    held = await _delivery(client, delivery["id"])
    assert (held["status"], held["attempts"]) == ("scheduled", 0)
    assert datetime.fromisoformat(held["send_at"]).astimezone(UTC) == NEXT_MORNING
    deferred = held["events"][-1]
    assert deferred["type"] == "deferred"
    assert "quiet hours" in deferred["detail"]["reason"]
    assert "America/New_York" in deferred["detail"]["reason"]
    assert deferred["detail"]["deferred_until"].startswith("2030-01-15T13:00:00")
    assert simulator.requests_for("twilio") == []

    clock(NEXT_MORNING)
    await _make_due(settings, delivery["id"])
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    sent = await _delivery(client, delivery["id"])
    assert (sent["status"], sent["attempts"]) == ("sent", 1)
    assert [e["type"] for e in sent["events"]] == ["created", "deferred", "sent"]
    assert len(simulator.requests_for("twilio")) == 1


async def test_emergencies_and_email_are_not_held(
    setup: tuple[Settings, httpx.AsyncClient, Any], clock: Callable[[datetime], None]
) -> None:
    """At 23:00 local an emergency SMS goes out at once, and so does an ordinary email."""
    settings, client, simulator = setup
    guest = await create_contact(
        client,
        phone="+12025550124",
        email="bo@example.com",
        first_name="Bo",
        timezone="America/New_York",
    )
    emergency = await _send(client, guest, channels=["sms"], priority="emergency")
    email = await _send(client, guest, channels=["email"])
    clock(LATE_EVENING)
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    assert (await _delivery(client, emergency["id"]))["status"] == "sent"
    assert (await _delivery(client, email["id"]))["status"] == "sent"
    assert len(simulator.requests_for("twilio")) == 1


async def test_the_zone_falls_back_to_the_organization_and_its_window_wins(
    setup: tuple[Settings, httpx.AsyncClient, Any], clock: Callable[[datetime], None]
) -> None:
    """A guest without a zone is paced in the organization's zone, by the organization's own
    window (09:30-20:00 in Europe/Paris here): 05:00 Paris waits for 09:30 Paris."""
    settings, client, _ = setup
    await _set_org(
        settings,
        timezone="Europe/Paris",
        settings={"quiet_hours": {"start": "09:30", "end": "20:00"}},
    )
    guest = await create_contact(client, phone="+33612345678", first_name="Cé")
    delivery = await _send(client, guest, channels=["sms"])
    clock(datetime(2030, 1, 15, 4, 0, tzinfo=UTC))  # 05:00 CET
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    held = await _delivery(client, delivery["id"])
    assert held["status"] == "scheduled"
    assert datetime.fromisoformat(held["send_at"]).astimezone(UTC) == datetime(
        2030, 1, 15, 8, 30, tzinfo=UTC
    )
    assert "09:30-20:00 in Europe/Paris" in held["events"][-1]["detail"]["reason"]


async def test_the_zone_falls_back_to_the_messages_event(
    setup: tuple[Settings, httpx.AsyncClient, Any], clock: Callable[[datetime], None]
) -> None:
    """A guest without a zone, sent a message about an event in Asia/Tokyo (the organization
    is in UTC): 23:00 in Tokyo waits for 08:00 in Tokyo."""
    settings, client, _ = setup
    event = await client.post(
        "/v1/events", json={"name": "Wedding", "date": "2030-06-01", "timezone": "Asia/Tokyo"}
    )
    assert event.status_code == 201, event.text
    guest = await create_contact(client, phone="+12025550127", first_name="Fa")
    delivery = await _send(client, guest, channels=["sms"], event_id=event.json()["id"])
    clock(datetime(2030, 1, 15, 14, 0, tzinfo=UTC))  # 23:00 JST
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    held = await _delivery(client, delivery["id"])
    assert datetime.fromisoformat(held["send_at"]).astimezone(UTC) == datetime(
        2030, 1, 15, 23, 0, tzinfo=UTC
    )
    assert "Asia/Tokyo" in held["events"][-1]["detail"]["reason"]


async def test_a_frequency_cap_defers_the_extra_send_until_the_window_frees(
    setup: tuple[Settings, httpx.AsyncClient, Any],
) -> None:
    """One SMS per contact per 24 hours: of two SMS to the same guest, one is sent and the
    other deferred by about 24 hours with the cap as its reason (quiet hours off here)."""
    settings, client, simulator = setup
    await _set_org(
        settings,
        settings={"quiet_hours": None, "frequency_caps": {"sms": {"count": 1, "hours": 24}}},
    )
    guest = await create_contact(client, phone="+12025550125", first_name="Di")
    other = await create_contact(client, phone="+12025550126", first_name="Ed")
    first = await _send(client, guest, channels=["sms"])
    second = await _send(client, guest, channels=["sms"])
    unrelated = await _send(client, other, channels=["sms"])
    before = utc_now()
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    after = utc_now()
    states = {d["id"]: await _delivery(client, d["id"]) for d in (first, second, unrelated)}
    assert sorted(s["status"] for s in states.values()) == ["scheduled", "sent", "sent"]
    [held] = [s for s in states.values() if s["status"] == "scheduled"]
    assert held["id"] in (first["id"], second["id"])
    assert held["attempts"] == 0
    until = datetime.fromisoformat(held["send_at"]).astimezone(UTC)
    assert before + timedelta(hours=24) - timedelta(seconds=1) <= until
    assert until <= after + timedelta(hours=24)
    assert held["events"][-1]["detail"]["reason"] == "frequency cap: 1 sms in 24h"
    assert len(simulator.requests_for("twilio")) == 2

    # a later batch counts the send already made, from the database
    third = await _send(client, guest, channels=["sms"])
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    assert (await _delivery(client, third["id"]))["status"] == "scheduled"


async def test_the_settings_are_set_through_the_api(
    setup: tuple[Settings, httpx.AsyncClient, Any],
) -> None:
    """PATCH /v1/organization/settings stores quiet hours, caps and the SMS help text as
    the pacer and the keyword handler read them; malformed values are refused, naming
    the field; null clears one."""
    _, client, _ = setup
    changed = await client.patch(
        "/v1/organization/settings",
        json={
            "quiet_hours": {"start": "09:00", "end": "20:30"},
            "frequency_caps": {"sms": {"count": 2, "hours": 12}},
            "sms_help_text": " Call Ana on +1 202 555 0100 ",
        },
    )
    assert changed.status_code == 200, changed.text
    got = (await client.get("/v1/organization/settings")).json()
    assert got["quiet_hours"] == {"start": "09:00", "end": "20:30", "enabled": True}
    assert got["frequency_caps"] == {"sms": {"count": 2, "hours": 12.0}}
    assert got["sms_help_text"] == "Call Ana on +1 202 555 0100"
    bad = await client.patch("/v1/organization/settings", json={"quiet_hours": {"start": "8"}})
    assert bad.status_code == 422
    assert "quiet_hours" in bad.text
    cleared = await client.patch("/v1/organization/settings", json={"quiet_hours": None})
    assert cleared.json()["quiet_hours"] is None
