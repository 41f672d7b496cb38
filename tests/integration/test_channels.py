"""Channels: fall through a message's preferences per recipient, and the in-app inbox with
its live stream and acknowledgement."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from guestcomms.app import create_app, create_worker
from guestcomms.channels.simulator import ProviderSimulator, SimulatorCredentials
from tests.smtp_server import free_port
from tests.support import create_contact, create_key, make_settings, running_app

TEMPLATE = {
    "name": "storm",
    "subject": "Weather update for {{ first_name }}",
    "text": "The ceremony moves indoors.",
    "channel_content": {
        "sms": {"body": "{{ first_name }}: the ceremony moves indoors."},
        "inapp": {
            "title": "Weather update",
            "body": "{{ first_name }}, the ceremony moves indoors.",
            "requires_ack": True,
        },
    },
}


async def _deliveries(client: httpx.AsyncClient, message_id: str) -> dict[str, dict[str, Any]]:
    view = (await client.get(f"/v1/messages/{message_id}")).json()
    return {d["contact_id"]: d for d in view["deliveries"]}


async def test_each_recipient_gets_the_first_channel_that_reaches_them(database_url: str) -> None:
    """Preferences [sms, email]: a guest without a phone gets email, and the delivery says why;
    a guest with neither fails with the reasons; unknown channel content is refused."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Org")
    async with running_app(settings) as api, api.as_key(key) as client:
        phone_only = await create_contact(client, phone="+447911123456", first_name="Pat")
        email_only = await create_contact(client, email="ana@example.org", first_name="Ana")
        template = (await client.post("/v1/templates", json=TEMPLATE)).json()["id"]
        no_voice = await client.post(
            "/v1/messages",
            json={"template_id": template, "contact_ids": [phone_only], "channels": ["voice"]},
        )
        sent = await client.post(
            "/v1/messages",
            json={
                "template_id": template,
                "contact_ids": [phone_only, email_only],
                "channels": ["sms", "email"],
            },
        )
        async with create_worker(settings) as worker:
            await worker.run_until_idle()
        deliveries = await _deliveries(client, sent.json()["id"])
        outbox = (await client.get("/v1/outbox")).json()["items"]
    assert (no_voice.status_code, no_voice.json()["field"]) == (422, "channels[0]")
    assert sent.json()["channels"] == ["sms", "email"]
    ana = deliveries[email_only]
    assert (ana["channel"], ana["status"]) == ("email", "sent")
    assert ana["events"][-1]["detail"]["skipped_channels"] == [
        {"channel": "sms", "reason": "no phone number"}
    ]
    assert [item["recipient"] for item in outbox] == ["ana@example.org"]
    pat = deliveries[phone_only]
    # no SMS provider is configured and the process has no default one: it waits for a retry
    assert (pat["channel"], pat["status"]) == ("sms", "retrying")
    assert "no sms provider" in pat["last_error"]


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """A real HTTP server (SSE needs a real stream) with an embedded worker; (base URL, key)."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Org")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, embedded_worker=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        await task


@pytest.mark.alone  # a latency bound: another worker's load would add to it
async def test_inapp_message_streams_within_a_second_and_ack_is_recorded(
    served: tuple[str, str],
) -> None:
    """An SSE client for the contact gets the message within 1 s of the send; acknowledging
    it marks the delivery delivered with an `acknowledged` event."""
    base_url, key = served
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as client:
        guest = await create_contact(client, email="zoe@example.org", first_name="Zoë")
        template = (await client.post("/v1/templates", json=TEMPLATE)).json()["id"]
        async with client.stream("GET", f"/v1/contacts/{guest}/inbox/stream") as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"
            started = time.monotonic()
            sent = await client.post(
                "/v1/messages",
                json={"template_id": template, "contact_ids": [guest], "channels": ["inapp"]},
            )
            assert sent.status_code == 202, sent.text
            async with asyncio.timeout(5):
                async for line in lines:
                    if line.startswith("data: "):
                        received = json.loads(line.removeprefix("data: "))
                        break
            elapsed = time.monotonic() - started
        assert elapsed < 1.0
        assert received["title"] == "Weather update"
        assert received["body"] == "Zoë, the ceremony moves indoors."
        assert received["requires_ack"] is True
        inbox = (await client.get(f"/v1/contacts/{guest}/inbox")).json()
        assert inbox["unread"] == 1
        acked = await client.post(f"/v1/inbox/{received['id']}/ack")
        assert acked.status_code == 200, acked.text
        assert acked.json()["acked_at"] is not None
        # the guest may acknowledge before the worker has recorded the send (the item is
        # published first): the delivery ends delivered either way
        async with asyncio.timeout(5):
            while True:
                url = f"/v1/deliveries/{received['delivery_id']}"
                delivery = (await client.get(url)).json()
                if delivery["status"] != "sending":
                    break
                await asyncio.sleep(0.05)
        after = (await client.get(f"/v1/contacts/{guest}/inbox")).json()
    assert delivery["status"] == "delivered"
    types = [e["type"] for e in delivery["events"]]
    assert types[0] == "created"
    assert sorted(types[1:]) == ["acknowledged", "sent"]
    assert after["unread"] == 0


async def test_sms_goes_through_the_organizations_twilio_account(database_url: str) -> None:
    """An SMS is sent through the organization's Twilio account (the simulator), with the
    status callback naming the delivery, and its sent event reports encoding and segments."""
    creds = SimulatorCredentials()
    settings = make_settings(database_url)
    key = await create_key(database_url, "Org")
    async with ProviderSimulator() as simulator:
        async with running_app(settings) as api, api.as_key(key) as client:
            added = await client.post(
                "/v1/providers",
                json={
                    "name": "twilio",
                    "kind": "twilio_sms",
                    "settings": {
                        "base_url": simulator.base_url,
                        "sender": "+447911123456",
                        "status_callback_url": "https://events.example/v1/inbound/twilio/org_x",
                    },
                    "credentials": {
                        "account_sid": creds.twilio_account_sid,
                        "auth_token": creds.twilio_auth_token,
                    },
                },
            )
            assert added.status_code == 201, added.text
            guest = await create_contact(client, phone="+447911123457", first_name="Zoë")
            template = (await client.post("/v1/templates", json=TEMPLATE)).json()["id"]
            sent = await client.post(
                "/v1/messages",
                json={"template_id": template, "contact_ids": [guest], "channels": ["sms"]},
            )
            async with create_worker(settings) as worker:
                await worker.run_until_idle()
            [delivery] = (await _deliveries(client, sent.json()["id"])).values()
        [request] = simulator.requests_for("twilio")
    assert (delivery["status"], delivery["provider"]) == ("sent", "twilio")
    assert delivery["events"][-1]["detail"]["encoding"] == "UCS-2"  # "ë" is not GSM-7
    assert delivery["events"][-1]["detail"]["segments"] == 1
    assert request.form["To"] == "+447911123457"
    assert request.form["Body"] == "Zoë: the ceremony moves indoors."
    assert f"guestcomms_delivery_id={delivery['id']}" in request.form["StatusCallback"]
