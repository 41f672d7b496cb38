"""The compliance gate on real sends: opt-outs block marketing on their channel with the reason,
other channels and (per the documented rule) emergencies still go out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from guestcomms.app import create_worker
from guestcomms.compliance.gate import IDENTITY_REQUIRED
from guestcomms.config import Settings
from tests.support import create_contact, create_key, create_template, make_settings, running_app

IDENTITY = {"sender_name": "Ana & Ben", "physical_address": "1 Via Roma\n22021 Bellagio, Italy"}
SMS_CONTENT = {"sms": {"body": "News for {{ first_name }}"}}


async def _send(
    client: httpx.AsyncClient,
    settings: Settings,
    *,
    template: str,
    contact: str,
    channels: list[str] | None = None,
    priority: str = "normal",
) -> dict[str, Any]:
    """Send one message to ``contact``, run the worker, return its one delivery."""
    body: dict[str, Any] = {
        "template_id": template,
        "contact_ids": [contact],
        "variables": {"venue": "Lake Como"},
        "priority": priority,
    }
    if channels:
        body["channels"] = channels
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 202, response.text
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    view = (await client.get(f"/v1/messages/{response.json()['id']}")).json()
    delivery: dict[str, Any] = view["deliveries"][0]
    return delivery


async def _setup(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """Sender identity set; a guest with email and phone; marketing and transactional
    templates. Returns (contact, marketing template, transactional template)."""
    response = await client.patch("/v1/organization/settings", json=IDENTITY)
    assert response.status_code == 200, response.text
    contact = await create_contact(
        client, email="zoe@example.org", phone="+14155550100", first_name="Zoe"
    )
    marketing = await create_template(
        client, name="newsletter", category="marketing", channel_content=SMS_CONTENT
    )
    transactional = await create_template(
        client, name="rsvp", category="invitations", channel_content=SMS_CONTENT
    )
    return contact, marketing, transactional


@pytest.mark.parametrize("reason", ["hard_bounce", "complaint"])
async def test_bounce_or_complaint_blocks_email_marketing_and_emergencies(
    database_url: str, reason: str
) -> None:
    """After a hard bounce or complaint, marketing email is blocked with the reason, and so is
    an emergency email (a bounced address cannot receive; a complaint is an opt-out of all)."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, _ = await _setup(client)
        added = await client.post(
            "/v1/suppressions",
            json={"channel": "email", "address": "Zoe@Example.org", "reason": reason},
        )
        assert added.status_code == 201, added.text
        blocked = await _send(client, settings, template=marketing, contact=contact)
        emergency = await _send(
            client, settings, template=marketing, contact=contact, priority="emergency"
        )
    assert blocked["status"] == "blocked"
    assert blocked["last_error"] == f"suppressed: {reason} (email)"
    assert emergency["status"] == "blocked"


async def test_unsubscribe_blocks_marketing_only(database_url: str) -> None:
    """An unsubscribed address gets no marketing email (blocked, with the reason), but
    transactional and emergency messages still reach it."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, transactional = await _setup(client)
        added = await client.post(
            "/v1/suppressions",
            json={"channel": "email", "address": "zoe@example.org", "reason": "unsubscribe"},
        )
        assert added.status_code == 201, added.text
        blocked = await _send(client, settings, template=marketing, contact=contact)
        rsvp = await _send(client, settings, template=transactional, contact=contact)
        emergency = await _send(
            client, settings, template=marketing, contact=contact, priority="emergency"
        )
    assert (blocked["status"], blocked["last_error"]) == (
        "blocked",
        "suppressed: unsubscribe (email)",
    )
    assert rsvp["status"] == "sent"
    assert emergency["status"] == "sent"


async def test_sms_stop_blocks_sms_but_email_marketing_still_goes(database_url: str) -> None:
    """A texted STOP blocks marketing and emergencies on SMS (carriers enforce it); the same
    guest's marketing email still goes out."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, _ = await _setup(client)
        added = await client.post(
            "/v1/suppressions",
            json={"channel": "sms", "address": "+14155550100", "reason": "stop"},
        )
        assert added.status_code == 201, added.text
        sms = await _send(client, settings, template=marketing, contact=contact, channels=["sms"])
        alert = await _send(
            client,
            settings,
            template=marketing,
            contact=contact,
            channels=["sms"],
            priority="emergency",
        )
        email = await _send(client, settings, template=marketing, contact=contact)
    assert (sms["status"], sms["last_error"]) == ("blocked", "suppressed: stop (sms)")
    assert (alert["status"], alert["last_error"]) == ("blocked", "suppressed: stop (sms)")
    assert email["status"] == "sent"


async def test_sms_marketing_needs_explicit_consent(database_url: str) -> None:
    """SMS marketing without a granted consent is blocked with the reason."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, _ = await _setup(client)
        sms = await _send(client, settings, template=marketing, contact=contact, channels=["sms"])
    assert sms["status"] == "blocked"
    assert sms["last_error"] == "no marketing consent: sms marketing needs explicit consent"


async def test_revoked_consent_blocks_marketing_email_and_is_versioned(database_url: str) -> None:
    """A newer consent version with granted=false blocks marketing email; the history keeps
    every version; granting again lets it through."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, _ = await _setup(client)
        for granted in (True, False):
            response = await client.post(
                f"/v1/contacts/{contact}/consents",
                json={
                    "channel": "email",
                    "purpose": "marketing",
                    "granted": granted,
                    "source": "rsvp-form",
                    "proof": {"ip": "203.0.113.7"},
                },
            )
            assert response.status_code == 201, response.text
        blocked = await _send(client, settings, template=marketing, contact=contact)
        history = (await client.get(f"/v1/contacts/{contact}/consents")).json()["items"]
    assert (blocked["status"], blocked["last_error"]) == (
        "blocked",
        "no marketing consent: revoked (email)",
    )
    assert [(c["version"], c["granted"]) for c in history] == [(1, True), (2, False)]
    assert history[0]["proof"] == {"ip": "203.0.113.7"}


async def test_marketing_email_without_sender_identity_is_blocked(database_url: str) -> None:
    """Marketing email is blocked until the organization sets its sender identity and
    physical address; transactional email is not affected."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, transactional = await _setup(client)
        cleared = await client.patch("/v1/organization/settings", json={"physical_address": None})
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["sender_name"] == "Ana & Ben"
        assert cleared.json()["physical_address"] is None
        blocked = await _send(client, settings, template=marketing, contact=contact)
        rsvp = await _send(client, settings, template=transactional, contact=contact)
    assert (blocked["status"], blocked["last_error"]) == ("blocked", IDENTITY_REQUIRED)
    assert rsvp["status"] == "sent"


async def test_manual_suppressions_can_be_listed_and_lifted(database_url: str) -> None:
    """A manual suppression blocks even transactional email until it is deleted."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Gate")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, _, transactional = await _setup(client)
        added = await client.post(
            "/v1/suppressions", json={"channel": "email", "address": "zoe@example.org"}
        )
        assert added.status_code == 201, added.text
        listed = (await client.get("/v1/suppressions", params={"channel": "email"})).json()
        blocked = await _send(client, settings, template=transactional, contact=contact)
        deleted = await client.delete(f"/v1/suppressions/{added.json()['id']}")
        sent = await _send(client, settings, template=transactional, contact=contact)
    assert [(s["address"], s["reason"]) for s in listed["items"]] == [("zoe@example.org", "manual")]
    assert (blocked["status"], blocked["last_error"]) == ("blocked", "suppressed: manual (email)")
    assert deleted.status_code == 204
    assert sent["status"] == "sent"
