"""Email open and click tracking, end to end: emails sent through the worker to the dev outbox
carry signed click redirects and an open pixel; the public routes record each fetch with the
machine rules' verdict and redirect only to the template's own URLs; the organization's and
the message's switches turn it off."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from guestcomms.app import create_worker
from guestcomms.config import Settings
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.messages.models import DeliveryEvent
from guestcomms.tracking.models import TrackingEvent
from guestcomms.tracking.repository import TrackingRepository
from guestcomms.tracking.rewrite import PIXEL_GIF
from guestcomms.tracking.tokens import make_click_token, make_open_token, tracking_key
from tests.support import create_contact, create_key, create_template, make_settings, running_app

BASE_URL = "https://rsvp.anaben.example"
RSVP_URL = "https://anaben.example/rsvp?guest=1&lang=it"
MAP_URL = "https://maps.example.org/como/villa"
GIFTS_URL = "https://gifts.example.net/list"
PHOTOS_URL = "https://photos.example.com/album"
TEMPLATE_URLS = {RSVP_URL, MAP_URL, GIFTS_URL, PHOTOS_URL}
TEMPLATE = {
    "name": "invitation",
    "subject": "You're invited, {{ first_name }}!",
    "html": (
        "<html><body><p>Dear {{ first_name }}, join us at {{ venue }}.</p>"
        '<p><a href="https://anaben.example/rsvp?guest=1&amp;lang=it">RSVP</a> '
        f'<a href="{MAP_URL}">Map</a> <a href="{GIFTS_URL}">Gifts</a> '
        f'<a href="{PHOTOS_URL}">Photos</a> <a href="mailto:ana@anaben.example">Write</a></p>'
        "</body></html>"
    ),
    "text": f"Dear {{{{ first_name }}}}, join us at {{{{ venue }}}}. RSVP: {RSVP_URL}",
    "variables": ["venue"],
}
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
APPLE_MPP = "Mozilla/5.0"
CLICK = re.compile(re.escape(BASE_URL) + r"/t/c/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")
PIXEL = re.compile(re.escape(BASE_URL) + r"/t/o/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)\.gif")


async def _send(
    client: httpx.AsyncClient,
    settings: Settings,
    *,
    template: str,
    contacts: list[str],
    **extra: Any,
) -> str:
    """Send ``template`` to ``contacts`` and run a worker until idle; the message's id."""
    response = await client.post(
        "/v1/messages",
        json={"template_id": template, "contact_ids": contacts, "variables": {"venue": "Como"}}
        | extra,
    )
    assert response.status_code == 202, response.text
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    message_id: str = response.json()["id"]
    return message_id


async def _outbox(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/v1/outbox")).json()["items"]
    return items


async def _events(database_url: str) -> list[TrackingEvent]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.scalars(select(TrackingEvent).order_by(TrackingEvent.id))
            return list(rows)
    finally:
        await engine.dispose()


async def _backdate(
    database_url: str,
    table: type[DeliveryEvent] | type[TrackingEvent],
    seconds: float,
    **match: str,
) -> None:
    """Move the rows of ``table`` matching ``match`` (column=value) ``seconds`` into the past:
    the ``sent`` events, as if the email went out then, or the clicks so far."""
    engine = create_engine(database_url)
    filters = [getattr(table, column) == value for column, value in match.items()]
    try:
        async with create_session_factory(engine)() as session, session.begin():
            found = await session.execute(select(table.id, table.created_at).where(*filters))
            for row_id, created_at in found.all():
                await session.execute(
                    update(table)
                    .where(table.id == row_id)
                    .values(created_at=created_at - timedelta(seconds=seconds))
                )
    finally:
        await engine.dispose()


def _flip(token: str, at: int) -> str:
    """``token`` with the character at ``at`` changed to another base64url character."""
    replacement = "A" if token[at] != "A" else "B"
    return token[:at] + replacement + token[at + 1 :]


async def test_click_links_are_signed_and_redirect_only_to_the_templates_urls(
    database_url: str,
) -> None:
    """Every http(s) link of a sent email is a signed redirect (mailto stays): following one
    is a 302 to exactly the template's URL; a token with one character changed, an open token
    on the click path, or a token naming a delivery of another organization is a 404."""
    settings = make_settings(database_url, public_base_url=BASE_URL)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact = await create_contact(client, email="zoe@example.org", first_name="Zoe")
        template = await create_template(client, **TEMPLATE)
        await _send(client, settings, template=template, contacts=[contact])
        [sent] = await _outbox(client)
        html_tokens = CLICK.findall(html_lib.unescape(sent["html"]))
        text_tokens = CLICK.findall(sent["text"])
        followed = {t: await api.client.get(f"/t/c/{t}") for t in {*html_tokens, *text_tokens}}
        token = html_tokens[0]
        tampered = [
            _flip(token, at) for at in (0, len(token) // 2, token.index(".") + 1, len(token) - 1)
        ]
        org = uuid.uuid4()  # a verified token naming the delivery under another organization
        delivery = from_public(IdKind.DELIVERY, sent["delivery_id"])
        tracking = tracking_key(settings)
        refused = [
            *tampered,
            make_open_token(tracking, organization_id=org, delivery_id=delivery),
            "garbage",
            f"{token}.x",
        ]
        wrong_org = make_click_token(
            tracking,
            organization_id=org,
            delivery_id=delivery,
            link_index=0,
            url=RSVP_URL,
            links_in_message=4,
        )
        answers = [await api.client.get(f"/t/c/{t}") for t in [*refused, wrong_org]]
        # an open token used on the click path, and a click token on the open path
        pixel = PIXEL.search(sent["html"])
        assert pixel is not None
        crossed = [
            await api.client.get(f"/t/c/{pixel.group(1)}"),
            await api.client.get(f"/t/o/{token}.gif"),
        ]
    assert len(html_tokens) == 4  # the four http(s) links; mailto: is left alone
    assert "mailto:ana@anaben.example" in sent["html"]
    assert len(text_tokens) == 1
    assert text_tokens[0] in html_tokens
    for response in followed.values():
        assert response.status_code == 302, response.text
        assert response.headers["location"] in TEMPLATE_URLS
        assert "no-store" in response.headers["cache-control"]
    assert {r.headers["location"] for r in followed.values()} == TEMPLATE_URLS
    assert followed[text_tokens[0]].headers["location"] == RSVP_URL  # &amp; decoded
    for response in [*answers, *crossed]:
        assert response.status_code == 404, response.text
        assert "location" not in response.headers
    events = await _events(database_url)
    assert sorted(e.url or "" for e in events) == sorted(TEMPLATE_URLS)  # only real clicks
    assert {e.kind for e in events} == {"click"}


async def test_machine_clicks_are_flagged_by_timing_and_every_link(database_url: str) -> None:
    """A click within seconds of sending is a link scanner (fast-click); later, one click is
    human, and clicking the email's fourth and last link within the burst window is a scanner
    following every link (all-links-clicked: the count rides in the tokens)."""
    settings = make_settings(database_url, public_base_url=BASE_URL)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact = await create_contact(client, email="zoe@example.org", first_name="Zoe")
        template = await create_template(client, **TEMPLATE)
        await _send(client, settings, template=template, contacts=[contact])
        [sent] = await _outbox(client)
        tokens = CLICK.findall(html_lib.unescape(sent["html"]))
        headers = {"User-Agent": BROWSER}
        first = await api.client.get(f"/t/c/{tokens[0]}", headers=headers)
        await _backdate(database_url, DeliveryEvent, 3600, type="sent")
        later = [await api.client.get(f"/t/c/{t}", headers=headers) for t in tokens[1:]]
    assert [r.status_code for r in [first, *later]] == [302] * 4
    verdicts = [(e.link_index, e.machine, e.machine_reason) for e in await _events(database_url)]
    assert verdicts == [
        (0, True, "fast-click"),
        (1, False, None),  # links 0 and 1 in the window: a person may click two
        (2, False, None),
        (3, True, "all-links-clicked"),  # the email's four links within the window
    ]


async def test_every_link_of_a_short_email_clicked_at_once_is_a_scanner(
    database_url: str,
) -> None:
    """In a two-link email, both links clicked within the window is a machine's doing, though
    under the click-burst count; one guest clicking one link twice, and another clicking the
    two links minutes apart, stay human. A hit from a network the operator listed is a
    machine's (known-network), whatever its user agent; the same hit from elsewhere is not."""
    settings = make_settings(
        database_url,
        public_base_url=BASE_URL,
        tracking_machine_networks="198.51.100.0/24, 2001:db8::/32",
    )
    key = await create_key(database_url, "Ana & Ben")
    two_links = {
        **TEMPLATE,
        "html": f'<p>Hi {{{{ first_name }}}}</p><a href="{RSVP_URL}">RSVP</a> '
        f'<a href="{MAP_URL}">Map</a>',
        "text": "Hi {{ first_name }}",
    }
    async with running_app(settings) as api, api.as_key(key) as client:
        contacts = [
            await create_contact(client, email=f"{name}@example.org", first_name=name)
            for name in ("scanned", "repeat", "slow")
        ]
        template = await create_template(client, **two_links)
        await _send(client, settings, template=template, contacts=contacts)
        outbox = await _outbox(client)
        sent = {
            name: next(item for item in outbox if f"{name}@example.org" in item["recipient"])
            for name in ("scanned", "repeat", "slow")
        }
        links = {
            name: CLICK.findall(html_lib.unescape(item["html"])) for name, item in sent.items()
        }
        await _backdate(database_url, DeliveryEvent, 3600, type="sent")
        headers = {"User-Agent": BROWSER}
        for token in links["scanned"]:
            await api.client.get(f"/t/c/{token}", headers=headers)
        for token in (links["repeat"][0], links["repeat"][0]):
            await api.client.get(f"/t/c/{token}", headers=headers)
        await api.client.get(f"/t/c/{links['slow'][0]}", headers=headers)
        await _backdate(
            database_url, TrackingEvent, 600, kind="click"
        )  # the next click comes ten minutes later
        await api.client.get(f"/t/c/{links['slow'][1]}", headers=headers)
        pixel = PIXEL.search(sent["slow"]["html"])
        assert pixel is not None
        for address in ("198.51.100.40", "2001:db8::7", "203.0.113.9"):
            transport = httpx.ASGITransport(app=api.app, client=(address, 40_000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as visitor:
                opened = await visitor.get(f"/t/o/{pixel.group(1)}.gif", headers=headers)
                assert opened.status_code == 200
    assert [len(found) for found in links.values()] == [2, 2, 2]
    events = await _events(database_url)
    clicks = [(e.link_index, e.machine_reason) for e in events if e.kind == "click"]
    assert clicks == [
        (0, None),
        (1, "all-links-clicked"),
        (0, None),
        (0, None),
        (0, None),
        (1, None),
    ]
    opens = [e.machine_reason for e in events if e.kind == "open"]
    assert opens == ["known-network", "known-network", None]


async def test_machine_opens_are_stored_and_left_out_of_human_opens(database_url: str) -> None:
    """The pixel answers a GIF that must not be cached; an Apple MPP fetch (user agent
    ``Mozilla/5.0``) is stored flagged apple-mpp and not counted as a human open; a browser
    fetch is; an invalid pixel token is a 404."""
    settings = make_settings(database_url, public_base_url=BASE_URL)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        zoe = await create_contact(client, email="zoe@example.org", first_name="Zoe")
        leo = await create_contact(client, email="leo@example.org", first_name="Leo")
        template = await create_template(client, **TEMPLATE)
        message = await _send(client, settings, template=template, contacts=[zoe, leo])
        pixels: dict[str, str] = {}
        for item in await _outbox(client):
            match = PIXEL.search(item["html"])
            assert match is not None
            pixels[item["recipient"]] = match.group(1)
        # Zoe's Apple Mail prefetches, then she opens it in a browser; Leo's only prefetches
        zoe_mpp = await api.client.get(
            f"/t/o/{pixels['zoe@example.org']}.gif", headers={"User-Agent": APPLE_MPP}
        )
        zoe_read = await api.client.get(
            f"/t/o/{pixels['zoe@example.org']}.gif", headers={"User-Agent": BROWSER}
        )
        leo_mpp = await api.client.get(
            f"/t/o/{pixels['leo@example.org']}.gif", headers={"User-Agent": APPLE_MPP}
        )
        bad = await api.client.get(f"/t/o/{_flip(pixels['leo@example.org'], 3)}.gif")
        items = await _outbox(client)
    for response in (zoe_mpp, zoe_read, leo_mpp):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/gif"
        assert response.content == PIXEL_GIF
        assert "no-store" in response.headers["cache-control"]
    assert bad.status_code == 404
    events = await _events(database_url)
    assert [(e.kind, e.machine, e.machine_reason, e.user_agent) for e in events] == [
        ("open", True, "apple-mpp", APPLE_MPP),
        ("open", False, None, BROWSER),
        ("open", True, "apple-mpp", APPLE_MPP),
    ]
    org = events[0].organization_id
    leo_delivery = next(
        from_public(IdKind.DELIVERY, i["delivery_id"])
        for i in items
        if i["recipient"] == "leo@example.org"
    )
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            repo = TrackingRepository(session, org)
            message_id = from_public(IdKind.MESSAGE, message)
            human = await repo.unique_opens(message_id=message_id)
            every = await repo.unique_opens(message_id=message_id, include_machine=True)
            leo_human = await repo.unique_opens(delivery_ids=[leo_delivery])
            other_org = await TrackingRepository(session, uuid.uuid4()).unique_opens(
                message_id=message_id, include_machine=True
            )
    finally:
        await engine.dispose()
    assert (human, every, leo_human, other_org) == (1, 2, 0, 0)


async def test_tracking_is_switched_off_per_organization_or_per_message(
    database_url: str,
) -> None:
    """With the organization's ``tracking`` set to false, or a message sent with
    ``tracking: false``, the stored email has no pixel and its links are the template's own;
    a message with tracking on (the default) has both. A setting that is not a boolean is
    refused, naming the field."""
    settings = make_settings(database_url, public_base_url=BASE_URL)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact = await create_contact(client, email="zoe@example.org", first_name="Zoe")
        template = await create_template(client, **TEMPLATE)
        off = await client.patch("/v1/organization/settings", json={"tracking": False})
        await _send(client, settings, template=template, contacts=[contact])
        [org_off] = await _outbox(client)
        on = await client.patch("/v1/organization/settings", json={"tracking": None})
        await _send(client, settings, template=template, contacts=[contact], tracking=False)
        message_off = (await _outbox(client))[0]
        await _send(client, settings, template=template, contacts=[contact])
        tracked = (await _outbox(client))[0]
        bad = await client.patch("/v1/organization/settings", json={"tracking": "sometimes"})
        unknown = await client.post(
            "/v1/messages", json={"template_id": template, "contact_ids": [contact], "track": 0}
        )
    assert (off.status_code, off.json()["tracking"]) == (200, False)
    assert (on.status_code, on.json()["tracking"]) == (200, True)
    for item in (org_off, message_off):
        assert "/t/" not in item["html"]
        assert "/t/" not in item["text"]
        assert 'href="https://anaben.example/rsvp?guest=1&amp;lang=it"' in item["html"]
        assert RSVP_URL in item["text"]
    assert PIXEL.search(tracked["html"]) is not None
    assert len(CLICK.findall(tracked["html"])) == 4
    assert RSVP_URL not in tracked["text"]
    assert bad.status_code == 422
    assert "tracking" in bad.text
    assert unknown.status_code == 422
