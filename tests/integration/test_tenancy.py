"""Tenancy: one organization can neither see, change, nor refer to another's rows.

The tables below list every route of the app. A route added without a row here makes
``test_every_route_is_in_the_tenancy_tables`` fail, so nobody can add an endpoint that takes
an id (or lists rows) without this test proving it is scoped to the caller's organization.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from guestcomms.app import create_worker
from tests.support import (
    Api,
    create_contact,
    create_key,
    create_template,
    make_settings,
    running_app,
)

PROBLEM = "application/problem+json"
VENUE = {"venue": "Lake Como"}
VERSION_BODY = {"subject": "Hello {{ first_name }}", "text": "Hi {{ first_name }}", "variables": []}

# Every route with a path parameter: the body A sends when probing B's resource (or None).
ROUTES_WITH_IDS: dict[tuple[str, str], dict[str, Any] | None] = {
    # events first: their DELETEs must run before the contact's (which removes the guest)
    ("GET", "/v1/events/{event_id}/guests"): None,
    ("POST", "/v1/events/{event_id}/guests"): {"contact_id": f"ct_{'0' * 32}"},
    ("GET", "/v1/events/{event_id}/guests/{contact_id}"): None,
    ("PATCH", "/v1/events/{event_id}/guests/{contact_id}"): {"table": "13"},
    ("POST", "/v1/events/{event_id}/guests/{contact_id}/rsvp"): {"rsvp": "no"},
    ("DELETE", "/v1/events/{event_id}/guests/{contact_id}"): None,
    ("GET", "/v1/events/{event_id}/households"): None,
    ("POST", "/v1/events/{event_id}/households"): {"name": "Mallory"},
    ("GET", "/v1/events/{event_id}/households/{household_id}"): None,
    ("PATCH", "/v1/events/{event_id}/households/{household_id}"): {"name": "Mallory"},
    ("DELETE", "/v1/events/{event_id}/households/{household_id}"): None,
    ("GET", "/v1/events/{event_id}"): None,
    ("PATCH", "/v1/events/{event_id}"): {"name": "Mallory"},
    ("DELETE", "/v1/events/{event_id}"): None,
    ("GET", "/v1/audiences/{audience_id}"): None,
    ("PATCH", "/v1/audiences/{audience_id}"): {"name": "Mallory"},
    ("GET", "/v1/audiences/{audience_id}/preview"): None,
    ("DELETE", "/v1/audiences/{audience_id}"): None,
    ("GET", "/v1/contacts/{contact_id}"): None,
    ("GET", "/v1/contacts/{contact_id}/consents"): None,
    ("POST", "/v1/contacts/{contact_id}/consents"): {
        "channel": "email",
        "purpose": "marketing",
        "granted": False,
        "source": "mallory",
    },
    ("DELETE", "/v1/suppressions/{suppression_id}"): None,
    ("PATCH", "/v1/contacts/{contact_id}"): {"first_name": "Mallory"},
    ("GET", "/v1/contacts/{contact_id}/export"): None,  # records a request: not in _state
    ("DELETE", "/v1/contacts/{contact_id}"): None,
    ("GET", "/v1/templates/{template_id}"): None,
    ("POST", "/v1/templates/{template_id}/versions"): VERSION_BODY,
    ("GET", "/v1/templates/{template_id}/versions/{number}"): None,
    ("PATCH", "/v1/templates/{template_id}"): {"category": "mallory"},
    ("POST", "/v1/templates/{template_id}/clone"): {"name": "mallory"},
    ("GET", "/v1/templates/{template_id}/usage"): None,
    ("POST", "/v1/templates/{template_id}/preview"): {
        "contact_id": "{contact_id}",  # the probed organization's contact: see _fill
        "variables": {"venue": "Mallory's"},
        "version": 1,  # the version POSTed above declares no variables
    },
    ("GET", "/v1/messages/{message_id}"): None,
    # campaigns in the order a campaign lives: the DELETE runs last (after its cancel)
    ("GET", "/v1/campaigns/{campaign_id}"): None,
    ("GET", "/v1/campaigns/{campaign_id}/experiment"): None,
    # the template's latest version (POSTed above) declares no variables
    ("PATCH", "/v1/campaigns/{campaign_id}"): {"name": "Mallory", "variables": {}},
    ("POST", "/v1/campaigns/{campaign_id}/preview"): None,
    ("POST", "/v1/campaigns/{campaign_id}/start"): None,
    ("POST", "/v1/campaigns/{campaign_id}/pause"): None,
    ("POST", "/v1/campaigns/{campaign_id}/resume"): None,
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): None,
    # the live counters: a stream that ends once the campaign is finished (after the cancel)
    ("GET", "/v1/campaigns/{campaign_id}/live"): None,
    ("DELETE", "/v1/campaigns/{campaign_id}"): None,
    ("POST", "/v1/messages/{message_id}/cancel"): None,
    ("GET", "/v1/deliveries/{delivery_id}"): None,
    ("POST", "/v1/deliveries/{delivery_id}/replay"): None,
    ("GET", "/v1/providers/{provider_id}"): None,
    ("PATCH", "/v1/providers/{provider_id}"): {"priority": 9},
    ("DELETE", "/v1/providers/{provider_id}"): None,
    ("GET", "/v1/contacts/{contact_id}/inbox"): None,
    ("GET", "/v1/contacts/{contact_id}/inbox/stream"): None,
    ("POST", "/v1/inbox/{item_id}/read"): None,
    ("POST", "/v1/inbox/{item_id}/ack"): None,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate"): {"overlap_hours": 1},
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): None,
    # after every route that needs the contact's address (an erased contact has none)
    ("POST", "/v1/contacts/{contact_id}/erase"): None,
    ("POST", "/v1/keys/{key_id}/revoke"): None,  # the organization's second key (not its own)
}

# Every list route under /v1: the cursor parameter its pages use.
LIST_ROUTES: dict[str, str] = {
    "/v1/contacts": "after",
    "/v1/audiences": "after",
    "/v1/templates": "after",
    "/v1/messages": "before",
    "/v1/outbox": "before",
    "/v1/deliveries": "after",
    "/v1/providers": "after",
    "/v1/webhook-endpoints": "after",
    "/v1/events": "after",
    "/v1/campaigns": "after",
    "/v1/audit": "after",  # the seq of the page's last entry
    "/v1/keys": "after",
    "/v1/suppressions": "after",
}

# Routes that only create rows in the caller's organization. Those that take ids in the body
# (messages: template_id, contact_ids, recipients) are covered by the cross-organization sends
# in test_organization_cannot_refer_to_another_organizations_rows.
CREATE_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/contacts"),
        ("POST", "/v1/contacts/import"),
        ("POST", "/v1/audiences"),
        # reads only the caller's contacts; another organization's event_id is a 422
        # (test_audiences.py::test_event_audiences_select_the_events_guests)
        ("POST", "/v1/audiences/preview"),
        ("POST", "/v1/templates"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/providers"),
        ("POST", "/v1/webhook-endpoints"),
        ("POST", "/v1/events"),
        ("POST", "/v1/campaigns"),
        ("POST", "/v1/keys"),
        ("PUT", "/v1/routes/{channel}"),  # the caller's own routing; the path names no row
        ("POST", "/v1/suppressions"),
        # the caller's own organization's settings; the path names no row
        ("GET", "/v1/organization/settings"),
        ("PATCH", "/v1/organization/settings"),
    }
)

# Routes without a path id that take template ids in the body or query (bulk updates and
# deletes, export's ?ids=) or write only the caller's rows (import); another organization's
# ids are refused in test_templates_management.py::test_template_routes_refuse_another_...
ROUTES_WITH_BODY_IDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/templates/bulk"),
        ("GET", "/v1/templates/export"),
        ("POST", "/v1/templates/import"),
        # cancels only the caller's deliveries with the key (test_campaigns.py::
        # test_cancel_by_key_cancels_only_the_callers_unclaimed_deliveries)
        ("POST", "/v1/deliveries/cancel"),
        # ?id= names the scope's row: another organization's is a 404, its own figures only
        # (test_analytics.py::test_analytics_equal_independent_counts_before_and_after_rollup)
        ("GET", "/v1/analytics"),
    }
)

# Routes a provider calls, authenticated by the organization's own webhook secret instead of
# an API key: another organization's secret is refused (tests/integration/test_inbound.py).
SIGNED_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/inbound/{provider}/{organization_id}"),
        ("GET", "/v1/inbound/{provider}/{organization_id}"),
        # a guest's unsubscribe link: the HMAC-signed token names the organization, contact
        # and delivery; a tampered one is a 404 (tests/integration/test_unsubscribe.py)
        ("GET", "/u/{token}"),
        ("POST", "/u/{token}"),
        # an email's open pixel and click redirect: the signed token names the organization
        # and delivery, which must be that organization's (tests/integration/test_tracking.py)
        ("GET", "/t/o/{token}.gif"),
        ("GET", "/t/c/{token}"),
    }
)

# Routes outside /v1 that carry no tenant data, or that are the operator's (not a tenant's).
# /metrics (the operator's, behind metrics_token) is left out of the OpenAPI document.
UNSCOPED_ROUTES: frozenset[str] = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/outbox",
    }
)


@dataclass
class Org:
    """One organization's client and the rows it made."""

    client: httpx.AsyncClient
    contact: str
    template: str
    message: str
    delivery: str
    provider: str
    email: str
    inbox_item: str = ""
    endpoint: str = ""
    event: str = ""
    household: str = ""
    campaign: str = ""
    audience: str = ""
    key: str = ""
    suppression: str = ""

    def path(self, template: str) -> str:
        """``template`` with this organization's ids filled in."""
        return template.format(
            contact_id=self.contact,
            template_id=self.template,
            message_id=self.message,
            delivery_id=self.delivery,
            provider_id=self.provider,
            item_id=self.inbox_item,
            endpoint_id=self.endpoint,
            event_id=self.event,
            household_id=self.household,
            campaign_id=self.campaign,
            audience_id=self.audience,
            key_id=self.key,
            suppression_id=self.suppression,
            number=1,
        )


async def _all(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        # a key's last use moves as the organization calls (test_api_keys checks it)
        items += [{k: v for k, v in item.items() if k != "last_used_at"} for item in page["items"]]
        if page["next_cursor"] is None:
            return items
        params[LIST_ROUTES[path]] = page["next_cursor"]


async def _state(org: Org) -> dict[str, Any]:
    """What the organization has, read through the API."""
    state: dict[str, Any] = {path: await _all(org.client, path) for path in LIST_ROUTES}
    for method, template in ROUTES_WITH_IDS:
        # a stream never ends (the live one not while a campaign is a draft); an export
        # records itself, so a second one differs
        if method == "GET" and not template.endswith(("/stream", "/live", "/export")):
            response = await org.client.get(org.path(template))
            assert response.status_code == 200, response.text
            state[template] = response.json()
    return state


async def _organization(api: Api, database_url: str, name: str, stack: Any) -> Org:
    key = await create_key(database_url, name)
    client = await stack.enter_async_context(api.as_key(key))
    email = f"guest@{name.lower().replace(' ', '-')}.example"
    contact = await create_contact(client, email=email, first_name=name, tags=["family"])
    template = await create_template(  # the same name in both: names are per organization
        client, channel_content={"inapp": {"title": "Hi", "body": "Hello {{ first_name }}"}}
    )
    response = await client.post(
        "/v1/messages",
        json={"template_id": template, "contact_ids": [contact], "variables": {"venue": name}},
    )
    assert response.status_code == 202, response.text
    message = response.json()["id"]
    inapp = await client.post(
        "/v1/messages",
        json={
            "template_id": template,
            "contact_ids": [contact],
            "channels": ["inapp"],
            "variables": {"venue": name},
        },
    )
    assert inapp.status_code == 202, inapp.text
    view = (await client.get(f"/v1/messages/{message}")).json()
    return Org(client, contact, template, message, view["deliveries"][0]["id"], "", email)


async def _add_provider(org: Org) -> None:
    """A provider account (after the sends: a configured channel no longer uses the outbox)."""
    response = await org.client.post(
        "/v1/providers",
        json={"name": "backup", "kind": "sendgrid", "credentials": {"api_key": "SG.x"}},
    )
    assert response.status_code == 201, response.text
    org.provider = response.json()["id"]
    endpoint = await org.client.post(
        "/v1/webhook-endpoints", json={"url": f"https://{org.email.split('@')[1]}/hooks"}
    )
    assert endpoint.status_code == 201, endpoint.text
    org.endpoint = endpoint.json()["id"]


async def _add_event(org: Org) -> None:
    """An event with a household, and the organization's contact as a guest in it."""
    response = await org.client.post(
        "/v1/events", json={"name": "Wedding", "date": "2026-06-20", "timezone": "Europe/Rome"}
    )
    assert response.status_code == 201, response.text
    org.event = response.json()["id"]
    response = await org.client.post(f"/v1/events/{org.event}/households", json={"name": "H"})
    assert response.status_code == 201, response.text
    org.household = response.json()["id"]
    response = await org.client.post(
        f"/v1/events/{org.event}/guests",
        json={"contact_id": org.contact, "household_id": org.household},
    )
    assert response.status_code == 201, response.text


@contextlib.asynccontextmanager
async def two_organizations(database_url: str) -> AsyncIterator[tuple[Org, Org]]:
    """Organizations A and B, each with a contact, a template and a message sent by a worker."""
    settings = make_settings(database_url)
    async with running_app(settings) as api, contextlib.AsyncExitStack() as stack:
        a = await _organization(api, database_url, "Org A", stack)
        b = await _organization(api, database_url, "Org B", stack)
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 4
        for org in (a, b):
            inbox = (await org.client.get(f"/v1/contacts/{org.contact}/inbox")).json()
            org.inbox_item = inbox["items"][0]["id"]
        await _add_provider(a)
        await _add_provider(b)
        await _add_event(a)
        await _add_event(b)
        for org in (a, b):
            response = await org.client.post(
                "/v1/audiences", json={"name": "Family", "filter": 'tags has "family"'}
            )
            assert response.status_code == 201, response.text
            org.audience = response.json()["id"]
            response = await org.client.post("/v1/keys", json={"scopes": ["messages:read"]})
            assert response.status_code == 201, response.text
            org.key = response.json()["id"]
            response = await org.client.post(
                "/v1/suppressions",
                json={"channel": "email", "address": f"blocked@{org.email.split('@')[1]}"},
            )
            assert response.status_code == 201, response.text
            org.suppression = response.json()["id"]
        for org in (a, b):
            response = await org.client.post(
                "/v1/campaigns",
                json={
                    "name": "Save the date",
                    "template_id": org.template,
                    "variables": VENUE,
                    # so that GET .../experiment has something to show (or hide)
                    "experiment": {"variants": [{"name": "A"}, {"name": "B"}]},
                },
            )
            assert response.status_code == 201, response.text
            org.campaign = response.json()["id"]
        yield a, b


def _fill(body: dict[str, Any] | None, org: Org) -> dict[str, Any] | None:
    """``body`` with each value ``"{contact_id}"`` replaced by ``org``'s contact id."""
    if body is None:
        return None
    return {k: org.contact if v == "{contact_id}" else v for k, v in body.items()}


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["id"] for item in items}


async def test_organization_cannot_reach_another_organizations_rows(database_url: str) -> None:
    """A's key gets a 404 on every route naming B's ids, and B's rows stay exactly as they were."""
    async with two_organizations(database_url) as (a, b):
        before = await _state(b)
        for (method, template), body in ROUTES_WITH_IDS.items():
            response = await a.client.request(method, b.path(template), json=_fill(body, b))
            assert response.status_code == 404, (method, template, response.text)
            assert response.headers["content-type"].split(";")[0] == PROBLEM
            assert response.json()["type"] == "/problems/not-found"
        assert await _state(b) == before
        # the same requests from B do reach the rows, so the 404s above were about tenancy
        for (method, template), body in sorted(
            ROUTES_WITH_IDS.items(), key=lambda item: item[0][0] == "DELETE"
        ):
            if template.endswith("/stream"):  # reached only as a stream; see test_channels
                continue
            response = await b.client.request(method, b.path(template), json=_fill(body, b))
            if template.endswith(("/cancel", "/replay")) and "/campaigns/" not in template:
                # reached, but B's was already sent
                assert response.status_code == 409, response.text
            elif (method, template) == ("POST", "/v1/events/{event_id}/guests"):
                # reached B's event, which A could not; the body names no contact of B's
                assert response.json()["field"] == "contact_id", response.text
            else:
                assert response.is_success, (method, template, response.text)


async def test_list_endpoints_show_only_the_callers_rows(database_url: str) -> None:
    """A's contact, template, message and outbox lists hold A's rows and none of B's."""
    async with two_organizations(database_url) as (a, b):
        for path in LIST_ROUTES:
            mine, theirs = await _all(a.client, path), await _all(b.client, path)
            assert mine, path
            assert theirs, path
            assert not _ids(mine) & _ids(theirs), path
        assert _ids(await _all(a.client, "/v1/contacts")) == {a.contact}
        assert _ids(await _all(a.client, "/v1/templates")) == {a.template}
        assert a.message in _ids(await _all(a.client, "/v1/messages"))
        assert len(await _all(a.client, "/v1/messages")) == 2  # the email and the in-app one
        outbox = await _all(a.client, "/v1/outbox")
        assert [item["recipient"] for item in outbox] == [a.email]
        assert [item["recipient"] for item in await _all(b.client, "/v1/outbox")] == [b.email]


async def test_organization_cannot_refer_to_another_organizations_rows(database_url: str) -> None:
    """A cannot send to B's contact nor with B's template (422), and tags match only A's."""
    async with two_organizations(database_url) as (a, b):
        before = await _state(a)
        venue = {"venue": "Lake Como"}
        response = await a.client.post(
            "/v1/messages",
            json={
                "template_id": a.template,
                "contact_ids": [a.contact, b.contact],
                "variables": venue,
            },
        )
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "/problems/unknown-contact"
        assert response.json()["field"] == "contact_ids[1]"
        response = await a.client.post(
            "/v1/messages",
            json={
                "template_id": a.template,
                "recipients": [{"contact_id": b.contact}],
                "variables": venue,
            },
        )
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "recipients[0].contact_id"
        response = await a.client.post(
            "/v1/messages",
            json={"template_id": b.template, "contact_ids": [a.contact], "variables": venue},
        )
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "template_id"
        assert await _state(a) == before
        # both organizations tag a contact "family": A's tag send reaches A's contact only
        response = await a.client.post(
            "/v1/messages", json={"template_id": a.template, "tags": ["family"], "variables": venue}
        )
        assert response.status_code == 202, response.text
        assert response.json()["recipient_count"] == 1
        message = (await a.client.get(f"/v1/messages/{response.json()['id']}")).json()
        assert [d["contact_id"] for d in message["deliveries"]] == [a.contact]


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, included routers flattened."""
    # FastAPI includes routers lazily: app.routes holds the included routers, not their routes
    pairs = [(c.path, c.methods) for c in iter_route_contexts(app.routes)]
    routes: set[tuple[str, str]] = set()
    for path, methods in pairs:
        assert path is not None, "a route without a path (a mount?) is not classified"
        routes |= {(method, path) for method in (methods or {"*"}) - {"HEAD", "OPTIONS"}}
    return routes


async def test_every_route_is_in_the_tenancy_tables(sqlite_url: str) -> None:
    """Every route taking an id, listing rows or creating them is covered by the tables above."""
    async with running_app(make_settings(sqlite_url)) as api:
        routes = _app_routes(api.app)
        openapi = (await api.client.get("/openapi.json")).json()
    documented = {(m.upper(), p) for p, item in openapi["paths"].items() for m in item}
    assert documented <= routes, f"routes missed by the enumeration: {documented - routes}"
    for method, path in sorted(routes):
        if (method, path) in SIGNED_ROUTES | CREATE_ROUTES | ROUTES_WITH_BODY_IDS:
            continue
        if "{" in path:
            assert (method, path) in ROUTES_WITH_IDS, f"{method} {path} has no tenancy check"
        elif path.startswith("/v1"):
            listed = method == "GET" and path in LIST_ROUTES
            assert listed or (method, path) in CREATE_ROUTES, (
                f"{method} {path} has no tenancy check"
            )
        else:
            assert path in UNSCOPED_ROUTES, f"{method} {path} is not classified for tenancy"
    named = set(ROUTES_WITH_IDS) | CREATE_ROUTES | SIGNED_ROUTES | ROUTES_WITH_BODY_IDS
    named |= {("GET", p) for p in LIST_ROUTES}
    assert not named - routes, f"the tables name routes the app does not have: {named - routes}"
