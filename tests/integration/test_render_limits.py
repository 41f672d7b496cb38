"""Sandbox limits through the API and the worker.

Escape payloads are refused when a template is saved. A runaway template fails its own
delivery as a render error and the worker sends the rest: each runaway template here passes
the checks at save time (nothing in it is wrong until it runs), and each would take minutes
of CPU or gigabytes of memory if the render were not stopped.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from guestcomms.app import create_worker
from tests.support import create_contact, create_key, create_template, make_settings, running_app

RUNAWAY_TEXTS = {
    # 10^10 loop iterations over ranges the sandbox allows (100,000 each)
    "nested-loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    # a gigabyte string in one expression
    "repeat": "{{ 'x' * 10**9 }}",
    # 10^10 characters of output, 100,000 at a time
    "output": "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
    # doubling a string 64 times
    "doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    ),
}


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ '{0.__class__}' | attr('format')(first_name) }}",
    "{{ '{x.__class__}'.format_map({'x': first_name}) }}",
]


@pytest.mark.parametrize("source", ESCAPES)
async def test_escape_payloads_are_a_422_when_saved(sqlite_url: str, source: str) -> None:
    """POST /v1/templates refuses each escape payload, naming the part and its line."""
    key = await create_key(sqlite_url, "Ana & Ben")
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        response = await client.post(
            "/v1/templates",
            json={"name": "t", "subject": "Hi", "text": f"Hello\n{source}", "variables": []},
        )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "text"
    assert "line 2 of text" in problem["detail"]


async def _send(client: httpx.AsyncClient, template_id: str, contact_id: str) -> str:
    response = await client.post(
        "/v1/messages",
        json={"template_id": template_id, "contact_ids": [contact_id], "variables": {}},
    )
    assert response.status_code == 202, response.text
    message_id: str = response.json()["id"]
    return message_id


async def _delivery(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    delivery: dict[str, Any] = response.json()["deliveries"][0]
    return delivery


@pytest.mark.parametrize("name", sorted(RUNAWAY_TEXTS))
async def test_runaway_render_fails_its_delivery_and_the_worker_goes_on(
    database_url: str, name: str
) -> None:
    """The runaway delivery ends failed (one attempt, a render error); a normal message
    claimed in the same worker run is sent."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        guest = await create_contact(client, email="ana@example.com", first_name="Ana")
        runaway = await create_template(
            client, name=name, subject="Hi", html=None, text=RUNAWAY_TEXTS[name], variables=[]
        )
        normal = await create_template(
            client,
            name="normal",
            subject="Hi {{ first_name }}",
            text="Hello",
            html=None,
            variables=[],
        )
        bad = await _send(client, runaway, guest)
        good = await _send(client, normal, guest)
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 2
        failed = await _delivery(client, bad)
        sent = await _delivery(client, good)
        outbox = (await client.get("/v1/outbox")).json()["items"]
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert failed["last_error"].startswith("render failed: could not render the text")
    assert sent["status"] == "sent"
    assert [item["subject"] for item in outbox] == ["Hi Ana"]
