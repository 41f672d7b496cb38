"""A campaign's live counters over Server-Sent Events: progress while it waits, the final
counts once it is sent, then the end of the stream; another organization's key gets a 404."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from guestcomms.app import create_worker, run_worker
from tests.support import create_contact, create_key, create_template, make_settings, running_app

VENUE = {"venue": "Lake Como"}


async def _campaign(client: httpx.AsyncClient, guests: int) -> str:
    """A started campaign to ``guests`` new contacts; its id."""
    for i in range(guests):
        await create_contact(client, email=f"guest{i}@example.com", first_name=f"G{i}")
    template = await create_template(client)
    body = {"name": "Invitation", "template_id": template, "variables": VENUE}
    created = await client.post("/v1/campaigns", json=body)
    assert created.status_code == 201, created.text
    campaign: str = created.json()["id"]
    started = await client.post(f"/v1/campaigns/{campaign}/start")
    assert started.status_code == 202, started.text
    return campaign


async def _events(client: httpx.AsyncClient, campaign: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the campaign's stream, until it ends."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", f"/v1/campaigns/{campaign}/live") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


async def test_stream_shows_progress_then_the_final_counts_and_ends(database_url: str) -> None:
    """While no worker runs the stream sends `progress` for a running campaign with nothing
    sent; once a worker fans it out and sends it, it ends with `done` and the final counts."""
    guests = 3
    settings = make_settings(database_url)
    key = await create_key(database_url, "Live")
    async with running_app(settings) as api, api.as_key(key) as client:
        campaign = await _campaign(client, guests)
        stream = asyncio.create_task(_events(client, campaign))
        await asyncio.sleep(1.3)  # a progress event at once, another a second later
        worker = create_worker(settings)
        running = asyncio.create_task(run_worker(worker, settings))
        try:
            async with asyncio.timeout(30):
                events = await stream
        finally:
            worker.stop()
            await running
    names = [name for name, _ in events]
    assert names[-1] == "done", names
    assert names[:2] == ["progress", "progress"], names
    first, final = events[0][1], events[-1][1]
    assert (first["status"], first["counts"], first["done"]) == ("running", {}, False)
    assert final["status"] == "completed"
    assert (final["total"], final["processed"], final["created"]) == (guests, guests, guests)
    assert final["counts"] == {"sent": guests}
    assert (final["in_flight"], final["progress"], final["done"]) == (0, 1.0, True)
    processed = [data["processed"] for _, data in events]
    assert processed == sorted(processed)


async def test_another_organizations_key_gets_404(database_url: str) -> None:
    """B's key cannot open A's campaign stream (404, as for an unknown campaign); a key
    without messages:read gets 403."""
    settings = make_settings(database_url)
    key_a = await create_key(database_url, "Org A")
    key_b = await create_key(database_url, "Org B")
    key_c = await create_key(database_url, "Org A", scopes=("messages:send",))
    async with running_app(settings) as api, api.as_key(key_a) as a, api.as_key(key_b) as b:
        campaign = await _campaign(a, 1)
        response = await b.get(f"/v1/campaigns/{campaign}/live")
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "/problems/not-found"
        unknown = await b.get(f"/v1/campaigns/cmp_{'0' * 32}/live")
        assert unknown.status_code == 404, unknown.text
        async with api.as_key(key_c) as c:
            assert (await c.get(f"/v1/campaigns/{campaign}/live")).status_code == 403
