"""One-click unsubscribe (RFC 8058), the signed link, the hosted preference page and the
marketing footer."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from typing import Any

import httpx

from guestcomms.app import create_worker
from guestcomms.compliance.unsubscribe import UnsubscribeClaim, UnsubscribeLinks
from guestcomms.config import Settings
from tests.smtp_server import SmtpTestServer
from tests.support import create_contact, create_key, create_template, make_settings, running_app

BASE_URL = "https://rsvp.anaben.example"
IDENTITY = {"sender_name": "Ana & Ben", "physical_address": "1 Via Roma, 22021 Bellagio"}
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LINK = re.compile(re.escape(BASE_URL) + r"/u/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


async def _send(
    client: httpx.AsyncClient, settings: Settings, *, template: str, contact: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/messages",
        json={"template_id": template, "contact_ids": [contact], "variables": {"venue": "Como"}},
    )
    assert response.status_code == 202, response.text
    async with create_worker(settings) as worker:
        await worker.run_until_idle()
    view = (await client.get(f"/v1/messages/{response.json()['id']}")).json()
    delivery: dict[str, Any] = view["deliveries"][0]
    return delivery


async def _setup(client: httpx.AsyncClient) -> tuple[str, str, str]:
    response = await client.patch("/v1/organization/settings", json=IDENTITY)
    assert response.status_code == 200, response.text
    contact = await create_contact(
        client, email="zoe@example.org", phone="+14155550100", first_name="Zoe"
    )
    marketing = await create_template(client, name="news", category="marketing-news")
    transactional = await create_template(client, name="rsvp", category="invitations")
    return contact, marketing, transactional


async def _newest_outbox(client: httpx.AsyncClient) -> dict[str, Any]:
    items: list[dict[str, Any]] = (await client.get("/v1/outbox")).json()["items"]
    return items[0]


async def test_marketing_email_over_smtp_carries_one_click_headers(database_url: str) -> None:
    """A marketing email received by a real SMTP server has List-Unsubscribe with a signed
    URL and List-Unsubscribe-Post; POSTing it suppresses, and the next marketing email to the
    guest is blocked with the reason while a transactional one still goes."""
    with SmtpTestServer() as smtp:
        settings = make_settings(
            database_url, smtp_host=smtp.host, smtp_port=smtp.port, public_base_url=BASE_URL
        )
        key = await create_key(database_url, "Ana & Ben")
        async with running_app(settings) as api, api.as_key(key) as client:
            contact, marketing, transactional = await _setup(client)
            first = await _send(client, settings, template=marketing, contact=contact)
            parsed = email.message_from_bytes(
                next(iter(smtp.messages)).content, policy=email.policy.default
            )
            header = str(parsed["List-Unsubscribe"])
            match = LINK.fullmatch(header.strip("<>"))
            assert match is not None, header
            response = await api.client.post(
                f"/u/{match.group(1)}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
            )
            second = await _send(client, settings, template=marketing, contact=contact)
            rsvp = await _send(client, settings, template=transactional, contact=contact)
            suppressions = (await client.get("/v1/suppressions")).json()["items"]
            consents = (await client.get(f"/v1/contacts/{contact}/consents")).json()["items"]
    assert first["status"] == "sent"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert response.status_code == 200, response.text
    assert [(s["address"], s["reason"], s["source"]) for s in suppressions] == [
        ("zoe@example.org", "unsubscribe", "one-click")
    ]
    assert [(c["channel"], c["purpose"], c["granted"]) for c in consents] == [
        ("email", "marketing", False)
    ]
    assert (second["status"], second["last_error"]) == (
        "blocked",
        "suppressed: unsubscribe (email)",
    )
    assert rsvp["status"] == "sent"
    assert "List-Unsubscribe" not in list(smtp.messages)[-1].content.decode()


async def test_footer_carries_identity_address_and_link(database_url: str) -> None:
    """A marketing email's text and HTML end with the sender identity, physical address and
    the unsubscribe link; a transactional email has no footer."""
    settings = make_settings(database_url, public_base_url=BASE_URL)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, transactional = await _setup(client)
        await _send(client, settings, template=marketing, contact=contact)
        news = await _newest_outbox(client)
        await _send(client, settings, template=transactional, contact=contact)
        rsvp = await _newest_outbox(client)
        link = LINK.search(news["text"])
        assert link is not None
        # some mailbox providers post the one-click body as multipart/form-data
        response = await api.client.post(
            f"/u/{link.group(1)}", files={"List-Unsubscribe": (None, "One-Click")}
        )
        suppressions = (await client.get("/v1/suppressions")).json()["items"]
    assert response.status_code == 200
    assert [s["reason"] for s in suppressions] == ["unsubscribe"]
    for part in (news["text"], news["html"]):
        assert "Ana &amp; Ben" in part or "Ana & Ben" in part
        assert "1 Via Roma, 22021 Bellagio" in part
        assert LINK.search(part) is not None
    assert BASE_URL not in rsvp["text"]
    assert LINK.search(rsvp["html"] or "") is None  # its open pixel is on BASE_URL too


async def test_tampered_or_foreign_tokens_are_404(database_url: str) -> None:
    """A token with a changed payload or signature, or signed with another secret, is 404."""
    settings = make_settings(database_url)
    claim = UnsubscribeClaim(uuid.uuid4(), uuid.uuid4(), "email", uuid.uuid4())
    good = UnsubscribeLinks.from_settings(settings).token(claim)
    payload, mac = good.split(".")
    foreign = UnsubscribeLinks(secret=b"another", base_url=BASE_URL).token(claim)
    other = UnsubscribeLinks.from_settings(settings).token(
        UnsubscribeClaim(uuid.uuid4(), claim.contact_id, "email", claim.delivery_id)
    )
    tampered = [
        f"{other.split('.')[0]}.{mac}",
        f"{payload}.{mac[:-2]}AA",
        foreign,
        "garbage",
        "a.b.c",
    ]
    async with running_app(settings) as api:
        for token in tampered:
            for method in ("GET", "POST"):
                response = await api.client.request(
                    method, f"/u/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
                )
                assert response.status_code == 404, (token, method)


async def test_preference_page_records_channel_and_topic_choices(database_url: str) -> None:
    """The page lists the guest's channels and the organization's marketing topics; saving
    records consent versions; a declined topic is blocked; unsubscribe-all revokes all."""
    settings = make_settings(database_url, public_base_url=BASE_URL)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        contact, marketing, _ = await _setup(client)
        offers = await create_template(client, name="offers", category="marketing-offers")
        await _send(client, settings, template=marketing, contact=contact)
        match = LINK.search((await _newest_outbox(client))["text"])
        assert match is not None
        path = f"/u/{match.group(1)}"
        page = await api.client.get(path)
        saved = await api.client.post(
            path,
            content=b"action=save&channel=email&channel=sms&topic=marketing-news",
            headers=FORM,
        )
        news = await _send(client, settings, template=marketing, contact=contact)
        declined = await _send(client, settings, template=offers, contact=contact)
        after_save = (await client.get(f"/v1/contacts/{contact}/consents")).json()["items"]
        gone = await api.client.post(path, content=b"action=unsubscribe_all", headers=FORM)
        blocked = await _send(client, settings, template=marketing, contact=contact)
        history = (await client.get(f"/v1/contacts/{contact}/consents")).json()["items"]
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["content-type"].startswith("text/html")
    assert "Messages from Ana &amp; Ben" in page.text
    assert 'name="channel" value="email" checked' in page.text
    assert 'name="channel" value="sms">' in page.text  # SMS marketing needs an opt-in
    assert 'value="marketing-news"' in page.text
    assert 'value="marketing-offers"' in page.text
    assert "<script" not in page.text
    assert "http" not in page.text.split("<body>")[1]  # no external assets or links
    assert saved.status_code == 200
    assert "Your preferences are saved." in saved.text
    assert news["status"] == "sent"
    assert (declined["status"], declined["last_error"]) == (
        "blocked",
        "no marketing consent: topic marketing-offers declined (email)",
    )
    assert {(c["channel"], c["granted"]) for c in after_save} == {("email", True), ("sms", True)}
    assert after_save[0]["proof"]["topics_declined"] == ["marketing-offers"]
    assert gone.status_code == 200
    assert blocked["status"] == "blocked"
    assert [(c["channel"], c["version"], c["granted"]) for c in history] == [
        ("email", 1, True),
        ("email", 2, False),
        ("sms", 1, True),
        ("sms", 2, False),
    ]
