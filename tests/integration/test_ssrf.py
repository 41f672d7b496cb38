"""The SSRF guard at work: refused sends never reach the target, fail once and for good, and
the API refuses literal internal URLs. DNS is faked (there is none here) by a resolver that
answers from a table; everything else is real: aiohttp sessions, servers, the worker."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from guestcomms.app import create_worker
from guestcomms.channels.base import OutgoingWebhook, PermanentProviderError
from guestcomms.channels.simulator import ProviderSimulator
from guestcomms.channels.webhook import WebhookProvider, generate_secret
from guestcomms.security.ssrf import ForbiddenTargetError, SsrfGuard
from tests.support import create_contact, create_key, make_settings, running_app

INTERNAL_NAME = "hooks.internal.example"  # "resolves" to 10.0.0.1
TEMPLATE = {
    "name": "vendor-update",
    "channel": "webhook",
    "channel_content": {"webhook": {"event_type": "wedding.update", "body": "Hello"}},
}


class TableResolver(AbstractResolver):
    """Answers from a fixed host -> address table, as DNS would (the one faked piece)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The table's address for ``host``; OSError for an unknown name."""
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        address = self.table[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        """Nothing to release."""


class Recorder:
    """A local HTTP server that records every request it receives."""

    def __init__(self, *, redirect_to: str | None = None) -> None:
        self.hits: list[str] = []
        self.redirect_to = redirect_to

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record the hit; redirect if told to, else answer 200."""
        self.hits.append(request.path)
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(text="ok")

    def app(self) -> web.Application:
        """The aiohttp application answering every path."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@pytest.fixture
async def start_server() -> AsyncIterator[Any]:
    """Start Recorder servers on a given loopback address; stop them after the test."""
    servers: list[TestServer] = []

    async def start(recorder: Recorder, host: str = "127.0.0.1") -> str:
        server = TestServer(recorder.app(), host=host)
        await server.start_server()
        servers.append(server)
        return f"http://{host}:{server.port}"

    yield start
    for server in servers:
        await server.close()


def webhook_item(url: str) -> OutgoingWebhook:
    """A webhook to ``url`` signed with a fresh secret."""
    return OutgoingWebhook(
        delivery_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        url=url,
        event_type="wedding.update",
        payload={"body": "hello"},
        secrets=(generate_secret(),),
        idempotency_key="dlv_test",
    )


async def test_worker_refuses_loopback_webhook_once_and_never_calls_it(
    database_url: str, simulator: ProviderSimulator
) -> None:
    """With the guard on, a delivery to http://127.0.0.1:<port> fails permanently on its first
    attempt with the reason, and the server there receives nothing."""
    open_settings = make_settings(database_url)  # test default: private targets allowed
    guarded = make_settings(database_url, allow_private_network_targets=False)
    key = await create_key(database_url, "Org")
    url = f"{simulator.base_url}/hooks/florist"
    async with running_app(open_settings) as api, api.as_key(key) as client:
        # stored while the guard was off (as if the policy changed after)
        assert (await client.post("/v1/webhook-endpoints", json={"url": url})).status_code == 201
        contact = await create_contact(client, email="fleur@example.org", webhook_url=url)
        template = (await client.post("/v1/templates", json=TEMPLATE)).json()["id"]
        sent = await client.post(
            "/v1/messages",
            json={"template_id": template, "contact_ids": [contact], "channels": ["webhook"]},
        )
        assert sent.status_code == 202, sent.text
        async with create_worker(guarded) as worker:
            await worker.run_until_idle()
        view = (await client.get(f"/v1/messages/{sent.json()['id']}")).json()
    (delivery,) = view["deliveries"]
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 1
    assert "refused: 127.0.0.1 is a loopback address" in delivery["last_error"]
    assert simulator.requests_for("webhook") == []


async def test_name_resolving_to_a_private_address_is_refused() -> None:
    """A name whose DNS answer is 10.0.0.1 is refused after resolution, as a permanent error
    naming the address; the resolver was asked (the check is on the resolved address)."""
    resolver = TableResolver({INTERNAL_NAME: "10.0.0.1"})
    async with aiohttp.ClientSession(connector=SsrfGuard().connector(resolver=resolver)) as http:
        provider = WebhookProvider(session=http)
        with pytest.raises(PermanentProviderError) as raised:
            await provider.send(webhook_item(f"http://{INTERNAL_NAME}/hook"))
    assert str(raised.value).startswith(f"refused: 10.0.0.1 is a private address ({INTERNAL_NAME})")
    assert raised.value.code == "ssrf_refused"
    assert resolver.asked == [INTERNAL_NAME]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://2130706433:9/",
        "http://0177.0.0.1:9/",
        "http://localhost.:9/",
    ],
)
async def test_connector_refuses_literal_and_encoded_hosts(url: str) -> None:
    """Literal hosts skip DNS in aiohttp; the connector refuses them all the same."""
    async with aiohttp.ClientSession(connector=SsrfGuard().connector()) as http:
        with pytest.raises(ForbiddenTargetError):
            await http.get(url)


async def test_redirect_to_a_private_address_is_refused(start_server: Any) -> None:
    """An allowed server redirecting to an internal address: the hop is refused by the same
    connector (base providers follow redirects) and the internal server never gets the
    request; the webhook provider does not follow it at all (a permanent failure)."""
    internal = Recorder()
    internal_url = await start_server(internal, host="127.0.0.2")  # loopback, not allowed
    allowed = Recorder(redirect_to=f"{internal_url}/secret")
    allowed_url = await start_server(allowed)
    guard = SsrfGuard(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    async with aiohttp.ClientSession(connector=guard.connector()) as http:
        with pytest.raises(ForbiddenTargetError, match=r"127\.0\.0\.2 is a loopback address"):
            await http.get(f"{allowed_url}/start")
        with pytest.raises(PermanentProviderError, match="redirects are not followed"):
            await WebhookProvider(session=http).send(webhook_item(f"{allowed_url}/hook"))
    assert allowed.hits == ["/start", "/hook"]
    assert internal.hits == []


async def test_redirect_to_a_name_resolving_privately_is_refused(start_server: Any) -> None:
    """A redirect to a name that resolves to 10.0.0.1 is refused after resolution."""
    allowed = Recorder(redirect_to=f"http://{INTERNAL_NAME}/admin")
    allowed_url = await start_server(allowed)
    guard = SsrfGuard(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    resolver = TableResolver({INTERNAL_NAME: "10.0.0.1"})
    async with aiohttp.ClientSession(connector=guard.connector(resolver=resolver)) as http:
        with pytest.raises(ForbiddenTargetError, match=r"10\.0\.0\.1 is a private address"):
            await http.get(f"{allowed_url}/start")
    assert resolver.asked == [INTERNAL_NAME]


async def test_api_refuses_literal_internal_urls_when_guarded(database_url: str) -> None:
    """With the guard on, literal internal webhook and provider URLs are 422 naming the field
    (an imported row is refused with its field); a public name is accepted (DNS is judged at
    send time)."""
    settings = make_settings(database_url, allow_private_network_targets=False)
    key = await create_key(database_url, "Org")
    async with running_app(settings) as api, api.as_key(key) as client:
        endpoint = await client.post(
            "/v1/webhook-endpoints", json={"url": "http://[::ffff:127.0.0.1]:8000/hook"}
        )
        contact = await client.post(
            "/v1/contacts", json={"email": "a@example.org", "webhook_url": "http://10.0.0.1/h"}
        )
        provider = await client.post(
            "/v1/providers",
            json={
                "name": "sg",
                "kind": "sendgrid",
                "settings": {"base_url": "http://169.254.169.254"},
                "credentials": {"api_key": "SG.x"},
            },
        )
        public = await client.post(
            "/v1/webhook-endpoints", json={"url": "https://hooks.example.com/guestcomms"}
        )
        fine = await create_contact(client, email="b@example.org")
        patched = await client.patch(
            f"/v1/contacts/{fine}", json={"webhook_url": "http://[fd00:ec2::254]/"}
        )
        imported = await client.post(
            "/v1/contacts/import",
            json=[
                {"email": "c@example.org", "webhook_url": "http://0177.0.0.1/h"},
                {"email": "d@example.org", "webhook_url": "https://hooks.example.com/d"},
            ],
        )
    assert (endpoint.status_code, endpoint.json()["field"]) == (422, "url")
    assert "loopback" in endpoint.json()["detail"]
    assert (contact.status_code, contact.json()["field"]) == (422, "webhook_url")
    assert "10.0.0.1 is a private address" in contact.json()["detail"]
    assert (provider.status_code, provider.json()["field"]) == (422, "settings.base_url")
    assert public.status_code == 201, public.text
    assert (patched.status_code, patched.json()["field"]) == (422, "webhook_url")
    report = imported.json()
    assert report["created"] == 1
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(1, "webhook_url")]
    assert "127.0.0.1 is a loopback address" in report["errors"][0]["message"]
