"""End to end over HTTP to a real SMTP server: key, contact, template, message, email."""

from __future__ import annotations

import asyncio
import email
import email.policy
from typing import Any

import httpx

from tests.smtp_server import SmtpTestServer
from tests.support import create_key, make_settings, running_app

DEADLINE_SECONDS = 15.0


async def _wait_for_status(
    client: httpx.AsyncClient, message_id: str, status: str
) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE_SECONDS):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/messages/{message_id}")).json()
            if body["counts"].get(status) == body["recipient_count"]:
                return body
            await asyncio.sleep(0.05)


async def test_one_message_arrives_well_formed(database_url: str) -> None:
    """The SMTP server receives exactly one well-formed email, and the API shows it sent."""
    with SmtpTestServer() as smtp:
        settings = make_settings(
            database_url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            email_from="Ana & Ben <hello@anaben.example>",
        )
        key = await create_key(database_url, "Ana & Ben")
        async with running_app(settings, embedded_worker=True) as api, api.as_key(key) as client:
            contact = await client.post(
                "/v1/contacts",
                json={"email": "zoe@example.org", "first_name": "Zoë", "last_name": "Martin"},
            )
            assert contact.status_code == 201, contact.text
            template = await client.post(
                "/v1/templates",
                json={
                    "name": "invitation",
                    "subject": "Save the date, {{ first_name }}",
                    "html": "<h1>Hello {{ first_name }}</h1><p>See you at {{ venue }}.</p>",
                    "text": "Hello {{ first_name }}, see you at {{ venue }}.",
                    "variables": ["venue"],
                },
            )
            assert template.status_code == 201, template.text
            sent = await client.post(
                "/v1/messages",
                json={
                    "template_id": template.json()["id"],
                    "contact_ids": [contact.json()["id"]],
                    "variables": {"venue": "Villa Balbiano"},
                },
            )
            assert sent.status_code == 202, sent.text
            view = await _wait_for_status(client, sent.json()["id"], "sent")
        received = list(smtp.messages)
    assert len(received) == 1
    assert received[0].rcpt_tos == ["zoe@example.org"]
    assert received[0].mail_from == "hello@anaben.example"
    parsed = email.message_from_bytes(received[0].content, policy=email.policy.default)
    assert parsed["Subject"] == "Save the date, Zoë"
    assert parsed["To"] == "Zoë Martin <zoe@example.org>"
    assert parsed["From"] == "Ana & Ben <hello@anaben.example>"
    assert parsed["Date"] is not None
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert text is not None
    assert "see you at Villa Balbiano" in text.get_content()
    assert html is not None
    assert "<h1>Hello Zoë</h1>" in html.get_content()
    delivery = view["deliveries"][0]
    assert delivery["status"] == "sent"
    assert delivery["provider"] == "smtp"
    assert parsed["Message-ID"] == delivery["provider_message_id"]
    assert [e["type"] for e in delivery["events"]] == ["created", "sent"]
