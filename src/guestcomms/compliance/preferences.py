"""The hosted preference page behind an unsubscribe link, and what its forms record.

One-click (RFC 8058) and "unsubscribe from all" suppress the address on the link's channel
(reason ``unsubscribe``) and record a revoked marketing consent. Saving preferences records,
for each channel the guest can be reached on, a new marketing consent version: granted if the
channel is ticked, with the unticked topics (marketing template categories) in its proof as
``topics_declined``; ticking a channel again lifts an earlier ``unsubscribe`` suppression of
it (never a bounce, complaint or STOP). The page is self-contained HTML (no external assets,
every value escaped) and its form posts back to the same URL.
"""

from __future__ import annotations

from html import escape
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.gate import Purpose, consent_channel
from guestcomms.compliance.models import Consent
from guestcomms.compliance.records import ConsentRepository
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.compliance.unsubscribe import UnsubscribeClaim
from guestcomms.contacts.models import Contact
from guestcomms.db.queue import insert_events
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import EventType
from guestcomms.errors import NotFoundError
from guestcomms.messages.models import Delivery
from guestcomms.organizations.models import Organization

PAGE_SOURCE = "preference-page"
_CHANNEL_LABELS = {"email": "Email", "sms": "Text messages (SMS)"}


def _addresses(contact: Contact) -> dict[str, str]:
    """The channels a guest can be sent marketing on from this page, with the address."""
    found = {"email": contact.email, "sms": contact.phone}
    return {channel: address for channel, address in found.items() if address}


async def unsubscribe(session: AsyncSession, claim: UnsubscribeClaim, *, source: str) -> None:
    """Suppress the link's address and revoke its marketing consent (nothing if the contact
    is gone: an erased guest already receives nothing)."""
    repo = ConsentRepository(session, claim.organization_id)
    contact = await repo.contact(claim.contact_id)
    channel = consent_channel(claim.channel)
    address = _addresses(contact).get(channel) if contact is not None else None
    if contact is None or address is None:
        return
    proof = {"delivery_id": claim.delivery_id.hex}
    added = await SuppressionRepository(session, claim.organization_id).suppress(
        channel=channel, address=address, reason="unsubscribe", source=source, detail=proof
    )
    delivery = await session.scalar(
        select(Delivery.id).where(
            Delivery.organization_id == claim.organization_id, Delivery.id == claim.delivery_id
        )
    )
    if added and delivery is not None:  # analytics count it against the message it came in
        await insert_events(
            session,
            [(claim.organization_id, delivery, EventType.UNSUBSCRIBED, {"source": source})],
            now=utc_now(),
        )
    await repo.record(
        contact_id=contact.id,
        channel=channel,
        purpose=Purpose.MARKETING.value,
        granted=False,
        source=source,
        proof=proof,
    )


async def save(session: AsyncSession, claim: UnsubscribeClaim, fields: dict[str, list[str]]) -> str:
    """Apply a preference-page form; return the page showing the result."""
    repo = ConsentRepository(session, claim.organization_id)
    contact = await repo.contact(claim.contact_id)
    if contact is None:
        raise NotFoundError("unknown unsubscribe link")
    if fields.get("action") == ["unsubscribe_all"]:
        await unsubscribe(session, claim, source=PAGE_SOURCE)
        for channel in _addresses(contact):
            if channel != consent_channel(claim.channel):
                await _record(repo, contact, channel, granted=False, declined=[], claim=claim)
        return await render_page(session, claim, notice="You are unsubscribed from all marketing.")
    chosen_channels = set(fields.get("channel", []))
    topics = await repo.topics()
    declined = sorted(set(topics) - set(fields.get("topic", [])))
    for channel, address in _addresses(contact).items():
        granted = channel in chosen_channels
        await _record(repo, contact, channel, granted=granted, declined=declined, claim=claim)
        if granted:  # opting in again lifts an unsubscribe, never a bounce or a STOP
            await SuppressionRepository(session, claim.organization_id).lift(
                channel=channel, address=address, reasons=("unsubscribe",)
            )
    return await render_page(session, claim, notice="Your preferences are saved.")


async def _record(
    repo: ConsentRepository,
    contact: Contact,
    channel: str,
    *,
    granted: bool,
    declined: list[str],
    claim: UnsubscribeClaim,
) -> None:
    proof: dict[str, Any] = {"delivery_id": claim.delivery_id.hex, "topics_declined": declined}
    await repo.record(
        contact_id=contact.id,
        channel=channel,
        purpose=Purpose.MARKETING.value,
        granted=granted,
        source=PAGE_SOURCE,
        proof=proof,
    )


def _newest(history: list[Consent]) -> dict[str, Consent]:
    newest: dict[str, Consent] = {}
    for consent in history:  # oldest first
        if consent.purpose == Purpose.MARKETING.value:
            newest[consent.channel] = consent
    return newest


async def render_page(session: AsyncSession, claim: UnsubscribeClaim, *, notice: str = "") -> str:
    """The preference page of the link's guest; ``NotFoundError`` if the contact is gone."""
    repo = ConsentRepository(session, claim.organization_id)
    contact = await repo.contact(claim.contact_id)
    organization = await session.get(Organization, claim.organization_id)
    if contact is None or organization is None:
        raise NotFoundError("unknown unsubscribe link")
    newest = _newest(list(await repo.history(contact.id)))
    suppressed = await SuppressionRepository(session, claim.organization_id).reasons(
        "email", [contact.email] if contact.email else []
    )
    channel_rows = []
    for channel in _addresses(contact):
        consent = newest.get(channel)
        # without a consent: email is soft opt-in until unsubscribed; SMS needs explicit consent
        on = consent.granted if consent is not None else channel == "email" and not suppressed
        channel_rows.append(_checkbox("channel", channel, _CHANNEL_LABELS[channel], on))
    token_consent = newest.get(consent_channel(claim.channel))
    declined = (
        set((token_consent.proof or {}).get("topics_declined", [])) if token_consent else set()
    )
    topic_rows = [_checkbox("topic", t, t, t not in declined) for t in await repo.topics()]
    sender = (organization.settings or {}).get("sender_name") or organization.name
    return _PAGE.format(
        sender=escape(str(sender)),
        notice=f'<p class="notice">{escape(notice)}</p>' if notice else "",
        channels="".join(channel_rows) or "<p>No channels.</p>",
        topics=("<fieldset><legend>Topics</legend>" + "".join(topic_rows) + "</fieldset>")
        if topic_rows
        else "",
    )


def _checkbox(name: str, value: str, label: str, checked: bool) -> str:
    mark = " checked" if checked else ""
    return (
        f'<label><input type="checkbox" name="{escape(name)}" value="{escape(value)}"{mark}> '
        f"{escape(label)}</label><br>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Your preferences</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}
fieldset{{margin:1rem 0}}.notice{{background:#eef;padding:.5rem}}</style>
</head><body>
<h1>Messages from {sender}</h1>
{notice}
<form method="post">
<fieldset><legend>Marketing messages on</legend>{channels}</fieldset>
{topics}
<button type="submit" name="action" value="save">Save my preferences</button>
</form>
<form method="post">
<button type="submit" name="action" value="unsubscribe_all">Unsubscribe from all marketing</button>
</form>
<p>Messages about events you are invited to (and emergencies) are not marketing and are
still sent.</p>
</body></html>
"""
