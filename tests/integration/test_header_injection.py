"""Header injection: CR/LF in guest data or template content never adds a header.

Line breaks are refused where they come in (contact names, a template's subject source, the
configured sender and reply-to), and whatever still reaches an email (a variable rendered
into the subject, a name stored before names were checked) is put on one line. The email
goes through the real SMTP provider to an aiosmtpd server and is parsed as received.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import update

from guestcomms.app import create_worker
from guestcomms.channels.mime import header_text
from guestcomms.contacts.models import Contact
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.ids import IdKind, from_public
from tests.smtp_server import ReceivedMessage, SmtpTestServer
from tests.support import create_contact, create_key, create_template, make_settings, running_app

INJECTION = "\r\nBcc: victim@evil.example"
GUEST = "zoe@example.org"


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize("value", [f"Zoe{INJECTION}", "Zoe\nX", "Zoe\x00", "Zoe\u2028X"])
async def test_contact_name_with_a_line_break_is_refused(
    sqlite_url: str, field: str, value: str
) -> None:
    """Creating or updating a contact with a line break in a name is a 422 naming the field."""
    key = await create_key(sqlite_url, "Ana & Ben")
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        created = await client.post("/v1/contacts", json={"email": GUEST, field: value})
        contact = await create_contact(client, email=GUEST, first_name="Zoe")
        updated = await client.patch(f"/v1/contacts/{contact}", json={field: value})
    for response in (created, updated):
        assert response.status_code == 422, response.text
        assert field in response.text


@pytest.mark.parametrize("subject", [f"Hello{INJECTION}", "Hello\n{{ first_name }}"])
async def test_template_subject_with_a_line_break_is_refused(sqlite_url: str, subject: str) -> None:
    """Saving a template whose subject source holds a line break is a 422 on ``subject``."""
    key = await create_key(sqlite_url, "Ana & Ben")
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        response = await client.post(
            "/v1/templates",
            json={"name": "t", "subject": subject, "text": "Hi", "variables": []},
        )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "subject"


@pytest.mark.parametrize("setting", ["email_from", "email_reply_to"])
def test_sender_and_reply_to_settings_with_a_line_break_are_refused(setting: str) -> None:
    """A configured From or Reply-To with a line break fails at startup, not in every email."""
    with pytest.raises(ValidationError, match=setting):
        make_settings("sqlite+aiosqlite://", **{setting: f"Hi <hi@example.com>{INJECTION}"})


def test_header_text_puts_any_value_on_one_line() -> None:
    """Line breaks and control characters become single spaces."""
    assert header_text(f" Zoe{INJECTION}\x00\x1b\u2028Martin ") == (
        "Zoe Bcc: victim@evil.example Martin"
    )


async def _send_one(database_url: str, *, venue: str, stored_name: str | None) -> ReceivedMessage:
    """Send one email whose subject renders ``venue``, to a contact whose first name is
    then overwritten in the database with ``stored_name`` (bypassing the API's check);
    return what the SMTP server received."""
    with SmtpTestServer() as smtp:
        settings = make_settings(
            database_url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            email_from="Ana & Ben <hello@anaben.example>",
            email_reply_to="Ana <ana@anaben.example>",
        )
        key = await create_key(database_url, "Ana & Ben")
        async with running_app(settings) as api, api.as_key(key) as client:
            contact = await create_contact(client, email=GUEST, first_name="Zoe")
            if stored_name is not None:
                await _overwrite_first_name(database_url, contact, stored_name)
            template = await create_template(
                client, subject="See you at {{ venue }}, {{ first_name }}"
            )
            await _post_message(client, template, contact, venue=venue)
            async with create_worker(settings) as worker:
                assert await worker.run_until_idle() == 1
        received = list(smtp.messages)
    assert len(received) == 1
    return received[0]


async def _overwrite_first_name(database_url: str, contact: str, name: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            contact_id = from_public(IdKind.CONTACT, contact)
            await session.execute(
                update(Contact).where(Contact.id == contact_id).values(first_name=name)
            )
    finally:
        await engine.dispose()


async def _post_message(
    client: httpx.AsyncClient, template: str, contact: str, *, venue: str
) -> None:
    response = await client.post(
        "/v1/messages",
        json={"template_id": template, "contact_ids": [contact], "variables": {"venue": venue}},
    )
    assert response.status_code == 202, response.text


def _parsed(received: ReceivedMessage) -> EmailMessage:
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _assert_no_injected_header(received: ReceivedMessage, parsed: EmailMessage) -> None:
    assert received.rcpt_tos == [GUEST]
    assert parsed["Bcc"] is None
    header_block = received.content.split(b"\r\n\r\n", 1)[0]  # the body may say anything
    assert b"\nBcc:" not in header_block
    assert not parsed.defects
    assert sorted(set(parsed.keys()) - {"X-Guestcomms-Delivery-Id", "DKIM-Signature"}) == [
        "Content-Type",
        "Date",
        "From",
        "MIME-Version",
        "Message-ID",
        "Reply-To",
        "Subject",
        "To",
    ]


async def test_line_break_in_a_rendered_subject_adds_no_header(database_url: str) -> None:
    """A variable holding CR/LF + Bcc renders into the subject as text, on one line."""
    received = await _send_one(database_url, venue=f"Lake Como{INJECTION}", stored_name=None)
    parsed = _parsed(received)

    _assert_no_injected_header(received, parsed)
    assert parsed["Subject"] == "See you at Lake Como Bcc: victim@evil.example, Zoe"
    assert parsed["Reply-To"] == "Ana <ana@anaben.example>"


async def test_line_break_in_a_stored_display_name_adds_no_header(database_url: str) -> None:
    """A name stored with CR/LF (before names were checked) becomes spaces in To."""
    received = await _send_one(database_url, venue="Lake Como", stored_name=f"Zoe{INJECTION}")
    parsed = _parsed(received)

    _assert_no_injected_header(received, parsed)
    to = parsed["To"]
    assert to.addresses[0].addr_spec == GUEST
    assert len(to.addresses) == 1
    assert to.addresses[0].display_name == "Zoe Bcc: victim@evil.example"
