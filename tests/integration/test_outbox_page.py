"""The dev outbox page at ``GET /outbox``: what it shows, how it escapes, where it is served."""

from __future__ import annotations

from guestcomms.channels.base import OutgoingEmail
from guestcomms.channels.outbox import OutboxProvider
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.ids import new_id
from guestcomms.organizations.repository import OrganizationRepository
from guestcomms.organizations.service import ensure_organization
from tests.support import make_settings, running_app

HOSTILE_SUBJECT = "<script>alert(1)</script>"
# tries to close the srcdoc attribute, then the iframe, then run a script in the page
HOSTILE_HTML = '"></iframe><script>alert(2)</script><p onclick="x()">hi</p>'


async def store(
    database_url: str,
    *,
    subject: str,
    recipient: str = "ana@example.com",
    html: str | None = "<p>Dear Ana, join us at <b>Lake Como</b>.</p>",
    text: str = "Dear Ana, join us at Lake Como.",
) -> None:
    """Keep one email in the dev outbox through the real outbox provider."""
    engine = create_engine(database_url)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as session, session.begin():
            org = await ensure_organization(OrganizationRepository(session), "Ana & Ben")
        delivery_id = new_id()
        email = OutgoingEmail(
            delivery_id=delivery_id,
            organization_id=org.id,
            idempotency_key=f"dlv_{delivery_id.hex}",
            message_id=f"<{delivery_id.hex}@example.com>",
            sender="Ana & Ben <hello@example.com>",
            recipient=recipient,
            recipient_name=None,
            subject=subject,
            text=text,
            html=html,
        )
        await OutboxProvider(session_factory=sessions).send_batch([email])
    finally:
        await engine.dispose()


async def test_page_shows_the_stored_email(sqlite_url: str) -> None:
    """The page lists the email's headers, its HTML in a sandboxed frame, and its text."""
    await store(sqlite_url, subject="You're invited, Ana!")
    async with running_app(make_settings(sqlite_url)) as api:
        response = await api.client.get("/outbox")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "You&#39;re invited, Ana!" in page
    assert "ana@example.com" in page
    assert "Ana &amp; Ben &lt;hello@example.com&gt;" in page
    assert '<iframe sandbox srcdoc="&lt;p&gt;Dear Ana, join us at &lt;b&gt;Lake Como' in page
    assert "<summary>Text part</summary>" in page
    assert "Dear Ana, join us at Lake Como." in page


async def test_hostile_content_is_escaped(sqlite_url: str) -> None:
    """A script in the subject or the HTML part never reaches the page as markup."""
    await store(sqlite_url, subject=HOSTILE_SUBJECT, html=HOSTILE_HTML)
    async with running_app(make_settings(sqlite_url)) as api:
        page = (await api.client.get("/outbox")).text
    assert HOSTILE_SUBJECT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page
    assert 'onclick="' not in page
    # the frame is still whole: one opening tag and one closing tag, both ours
    assert page.count("<iframe") == 1
    assert page.count("</iframe>") == 1
    assert 'srcdoc="&#34;&gt;&lt;/iframe&gt;&lt;script&gt;alert(2)' in page


async def test_limit_keeps_the_newest(sqlite_url: str) -> None:
    """`?limit=1` shows only the newest email; a limit over 500 is refused."""
    await store(sqlite_url, subject="First", recipient="first@example.com")
    await store(sqlite_url, subject="Second", recipient="second@example.com")
    async with running_app(make_settings(sqlite_url)) as api:
        page = (await api.client.get("/outbox", params={"limit": 1})).text
        too_many = await api.client.get("/outbox", params={"limit": 501})
    assert "second@example.com" in page
    assert "first@example.com" not in page
    assert too_many.status_code == 422


async def test_not_served_in_production(sqlite_url: str) -> None:
    """In production the page does not exist."""
    await store(sqlite_url, subject="You're invited, Ana!")
    settings = make_settings(sqlite_url, environment="production", secret_key="x" * 32)
    async with running_app(settings) as api:
        response = await api.client.get("/outbox")
    assert response.status_code == 404
    assert "invited" not in response.text
