"""Idempotency-Key on POST /v1/messages: a retried send never makes a second message.

The same key and body replay the first answer; the same key with another body is refused;
concurrent requests with one key make one message (on PostgreSQL through the unique
constraint, on SQLite because writes serialize). Keys belong to an organization.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import (
    Api,
    create_contact,
    create_key,
    create_template,
    make_settings,
    running_app,
)

PROBLEM = "application/problem+json"


@dataclass
class Sender:
    """An organization's client with a template and two contacts, and a valid send body."""

    client: httpx.AsyncClient
    body: dict[str, Any]

    async def send(self, key: str | None, body: dict[str, Any] | None = None) -> httpx.Response:
        """POST the send body (or ``body``) with Idempotency-Key ``key``."""
        headers = {"Idempotency-Key": key} if key is not None else {}
        return await self.client.post("/v1/messages", json=body or self.body, headers=headers)

    async def messages(self) -> dict[str, int]:
        """Every message of the organization with its number of deliveries."""
        response = await self.client.get("/v1/messages", params={"limit": 500})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next_cursor"] is None
        counts = {}
        for item in page["items"]:
            detail = (await self.client.get(f"/v1/messages/{item['id']}")).json()
            counts[item["id"]] = sum(detail["counts"].values())
        return counts


async def _sender(api: Api, database_url: str, org: str, stack: Any) -> Sender:
    key = await create_key(database_url, org)
    client = await stack.enter_async_context(api.as_key(key))
    ana = await create_contact(client, email="ana@example.com", first_name="Ana")
    ben = await create_contact(client, email="ben@example.com", first_name="Ben")
    template = await create_template(client)
    body = {"template_id": template, "contact_ids": [ana, ben], "variables": {"venue": "Como"}}
    return Sender(client, body)


@contextlib.asynccontextmanager
async def senders(database_url: str) -> AsyncIterator[tuple[Sender, Sender]]:
    """Two organizations, A and B, on one running app."""
    async with (
        running_app(make_settings(database_url)) as api,
        contextlib.AsyncExitStack() as stack,
    ):
        yield (
            await _sender(api, database_url, "Org A", stack),
            await _sender(api, database_url, "Org B", stack),
        )


async def test_same_key_and_body_replays_the_first_answer(database_url: str) -> None:
    """A repeat with the same key and body returns the same 202 and id, marked as replayed."""
    async with senders(database_url) as (a, _):
        first = await a.send("invite-2025-06-14")
        second = await a.send("invite-2025-06-14")
        assert first.status_code == second.status_code == 202, second.text
        assert "idempotent-replayed" not in first.headers
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()
        assert await a.messages() == {first.json()["id"]: 2}


async def test_same_key_with_another_body_is_refused(database_url: str) -> None:
    """The same key with a different body is a 422 naming `Idempotency-Key`; nothing is made."""
    async with senders(database_url) as (a, _):
        first = await a.send("invite")
        assert first.status_code == 202, first.text
        before = await a.messages()
        changed = {**a.body, "contact_ids": a.body["contact_ids"][:1]}
        for body in (
            changed,
            {**a.body, "priority": "high"},
            {**a.body, "variables": {"venue": "x"}},
        ):
            response = await a.send("invite", body)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].split(";")[0] == PROBLEM
            assert response.json()["field"] == "Idempotency-Key"
            assert response.json()["type"] == "/problems/idempotency-key-reused"
        assert await a.messages() == before
        replay = await a.send("invite")
        assert replay.json()["id"] == first.json()["id"]


async def test_different_keys_make_different_messages(database_url: str) -> None:
    """Two keys (or no key at all) make one message per request."""
    async with senders(database_url) as (a, _):
        ids = [(await a.send(key)).json()["id"] for key in ("one", "two", None, None)]
        assert len(set(ids)) == 4
        assert await a.messages() == dict.fromkeys(ids, 2)


async def test_invalid_key_and_refused_requests(database_url: str) -> None:
    """An over-long or empty key is a 422; a refused request does not use up its key."""
    async with senders(database_url) as (a, _):
        for key in ("x" * 256, ""):
            response = await a.send(key)
            assert response.status_code == 422, response.text
            assert response.json()["field"] == "Idempotency-Key"
        bad = {**a.body, "variables": {}}
        assert (await a.send("retry-me", bad)).status_code == 422
        assert await a.messages() == {}
        fixed = await a.send("retry-me")
        assert fixed.status_code == 202, fixed.text
        assert "idempotent-replayed" not in fixed.headers
        assert (await a.send("x" * 255)).status_code == 202
        assert len(await a.messages()) == 2


async def test_concurrent_requests_with_one_key_make_one_message(database_url: str) -> None:
    """Five concurrent identical requests with one key make exactly one message, one id."""
    async with senders(database_url) as (a, _):
        responses = await asyncio.gather(*(a.send("concurrent") for _ in range(5)))
        assert [r.status_code for r in responses] == [202] * 5, [r.text for r in responses]
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1
        replayed = [r.headers.get("idempotent-replayed") for r in responses]
        assert replayed.count(None) == 1, replayed
        assert await a.messages() == {ids.pop(): 2}


async def test_keys_belong_to_an_organization(database_url: str) -> None:
    """Organization B may use the key value A used; each gets its own message."""
    async with senders(database_url) as (a, b):
        first_a = await a.send("shared-key")
        first_b = await b.send("shared-key")
        assert first_a.status_code == first_b.status_code == 202, first_b.text
        assert "idempotent-replayed" not in first_b.headers
        assert first_a.json()["id"] != first_b.json()["id"]
        again_b = await b.send("shared-key")
        assert again_b.json()["id"] == first_b.json()["id"]
        assert await a.messages() == {first_a.json()["id"]: 2}
        assert await b.messages() == {first_b.json()["id"]: 2}
