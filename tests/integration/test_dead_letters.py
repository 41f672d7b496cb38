"""Dead letters: listed by status, replayed once with their original idempotency key."""

from __future__ import annotations

import asyncio

from guestcomms.app import create_worker
from guestcomms.db.engine import create_engine, create_session_factory
from tests.smtp_server import SmtpTestServer
from tests.support import create_key, make_settings, running_app, seed_deliveries


async def test_dead_delivery_is_listed_and_replayed_once(database_url: str) -> None:
    """A delivery out of retries is listed as dead; replay sends it once, same key and id."""
    engine = create_engine(database_url)
    try:
        [delivery_id] = await seed_deliveries(create_session_factory(engine), count=1)
    finally:
        await engine.dispose()
    public_id = f"dlv_{delivery_id.hex}"
    key = await create_key(database_url, "Seeded")
    with SmtpTestServer() as smtp:
        settings = make_settings(
            database_url, smtp_host=smtp.host, smtp_port=smtp.port, max_attempts=2
        )
        smtp.fail_next(421, count=2, stage="MAIL", text="busy")
        async with create_worker(settings) as worker:
            for _ in range(5):
                await worker.run_until_idle()
                await asyncio.sleep(0.06)
        async with running_app(settings) as api, api.as_key(key) as client:
            dead = (await client.get("/v1/deliveries", params={"status": "dead"})).json()
            assert [d["id"] for d in dead["items"]] == [public_id]
            assert dead["items"][0]["attempts"] == 2
            not_dead = await client.post("/v1/deliveries/dlv_" + "0" * 32 + "/replay")
            assert not_dead.status_code == 404
            replayed = await client.post(f"/v1/deliveries/{public_id}/replay")
            assert replayed.status_code == 200, replayed.text
            assert replayed.json()["status"] == "queued"
            again = await client.post(f"/v1/deliveries/{public_id}/replay")
            assert again.status_code == 409
            async with create_worker(settings) as worker:
                assert await worker.run_until_idle() == 1
            view = (await client.get(f"/v1/deliveries/{public_id}")).json()
        received = list(smtp.messages)
    assert len(received) == 1
    assert f"<{delivery_id.hex}@".encode() in received[0].content
    assert view["status"] == "sent"
    assert [e["type"] for e in view["events"]] == [
        "created",
        "retry_scheduled",
        "dead",
        "replayed",
        "sent",
    ]
