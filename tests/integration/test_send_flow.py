"""A message from the API through the worker to the dev outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from guestcomms.app import create_worker
from tests.support import create_contact, create_key, create_template, make_settings, running_app


async def _message(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_message_is_rendered_and_stored_in_the_outbox(database_url: str) -> None:
    """One message to two guests yields two rendered outbox emails and `sent` deliveries."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        ana = await create_contact(client, email="ana@example.com", first_name="Ana")
        ben = await create_contact(client, email="ben@example.com", first_name="Ben")
        template = await create_template(client)
        response = await client.post(
            "/v1/messages",
            json={
                "template_id": template,
                "contact_ids": [ana, ben, ana],
                "variables": {"venue": "Lake Como"},
            },
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["recipient_count"] == 2
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 2
        message = await _message(client, accepted["id"])
        outbox = (await client.get("/v1/outbox")).json()["items"]
    assert message["counts"] == {"sent": 2}
    assert {d["status"] for d in message["deliveries"]} == {"sent"}
    assert [e["type"] for e in message["deliveries"][0]["events"]] == ["created", "sent"]
    subjects = sorted(item["subject"] for item in outbox)
    assert subjects == ["You're invited, Ana!", "You're invited, Ben!"]
    assert all("Lake Como" in item["html"] for item in outbox)
    assert len({item["message_id_header"] for item in outbox}) == 2
