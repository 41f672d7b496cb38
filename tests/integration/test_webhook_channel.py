"""The webhook channel end to end: registered endpoints, signed posts that the published
standardwebhooks package verifies, and secret rotation with an overlap."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from guestcomms.app import create_worker
from guestcomms.channels.simulator import ProviderSimulator
from tests.support import create_contact, create_key, make_settings, running_app

TEMPLATE = {
    "name": "vendor-update",
    "channel": "webhook",
    "channel_content": {
        "webhook": {"event_type": "wedding.update", "body": "Setup moves to {{ venue }}."}
    },
    "variables": ["venue"],
}


async def test_webhook_is_signed_and_rotation_overlaps(
    database_url: str, simulator: ProviderSimulator
) -> None:
    """The post verifies with the endpoint's secret; after a rotation it verifies with both the
    new and the old secret; an unregistered URL fails with the reason."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Org")
    url = f"{simulator.base_url}/hooks/florist"
    async with running_app(settings) as api, api.as_key(key) as client:
        endpoint = (await client.post("/v1/webhook-endpoints", json={"url": url})).json()
        florist = await create_contact(client, email="fleur@example.org", webhook_url=url)
        stranger = await create_contact(
            client, email="x@example.org", webhook_url=f"{simulator.base_url}/hooks/unknown"
        )
        template = (await client.post("/v1/templates", json=TEMPLATE)).json()["id"]

        async def send(venue: str, *contacts: str) -> str:
            response = await client.post(
                "/v1/messages",
                json={
                    "template_id": template,
                    "contact_ids": list(contacts),
                    "channels": ["webhook"],
                    "variables": {"venue": venue},
                },
            )
            assert response.status_code == 202, response.text
            message_id: str = response.json()["id"]
            return message_id

        first = await send("the barn", florist, stranger)
        async with create_worker(settings) as worker:
            await worker.run_until_idle()
        rotated = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate", json={"overlap_hours": 1}
        )
        await send("the orangery", florist)
        async with create_worker(settings) as worker:
            await worker.run_until_idle()
        view = (await client.get(f"/v1/messages/{first}")).json()
        listed = (await client.get("/v1/webhook-endpoints")).json()
    posts = simulator.requests_for("webhook")
    assert [p.path for p in posts] == ["/hooks/florist", "/hooks/florist"]
    old, new = endpoint["secret"], rotated.json()["secret"]
    first_post, second_post = posts
    body = Webhook(old).verify(first_post.body, dict(first_post.headers))
    assert body["type"] == "wedding.update"
    assert body["data"]["body"] == "Setup moves to the barn."
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(first_post.body, dict(first_post.headers))
    for secret in (old, new):  # both sign the post made during the overlap
        assert (
            Webhook(secret).verify(second_post.body, dict(second_post.headers))["data"]["body"]
            == "Setup moves to the orangery."
        )
    by_contact = {d["contact_id"]: d for d in view["deliveries"]}
    assert by_contact[florist]["status"] == "sent"
    assert by_contact[stranger]["status"] == "failed"
    assert "not a registered webhook endpoint" in by_contact[stranger]["last_error"]
    assert listed["items"][0]["active_secrets"] == 2
    assert "secret" not in listed["items"][0]
