"""The compliance gate: the one decision every delivery passes before it is sent.

The composer calls :func:`check_batch` in its load phase, once per batch (three small
queries: the messages' template categories, the newest marketing consents, the
organizations' settings; suppressions are looked up by the composer). :func:`decide` is
pure: it returns the reason a delivery is blocked, or ``None``. A blocked delivery is
recorded ``blocked`` with that reason, never dropped silently.

Purpose (no column: derived, so it cannot drift from the content):

- **emergency**: a message of priority 0 (``emergency``), whatever its template;
- **marketing**: a template whose category is ``marketing`` or starts with ``marketing``
  (``marketing-newsletter``...); the category is the topic on the preference page;
- **transactional**: everything else (invitations, RSVP confirmations, reminders...).

Rules, in order:

1. Suppressions. ``unsubscribe`` (one-click, preference page, provider list-unsubscribe)
   blocks **marketing only**: transactional and emergency messages still reach the guest.
   Every other reason (``hard_bounce``, ``complaint``, ``stop``, ``opt_out``, ``manual``, or
   one we do not know) blocks **every** purpose, emergencies included: a hard-bounced address
   cannot receive anything, a complaint or an SMS STOP is a legal opt-out of all messages
   from this sender (carriers enforce STOP), and a manual suppression is the operator's call.
   An SMS STOP also stops calls to the number (suppressions of ``voice`` are kept as ``sms``).
2. Consent (marketing only). The newest consent version for (contact, channel, marketing)
   wins: ``granted=false`` blocks. SMS and voice marketing need explicit consent (a newest
   version with ``granted=true``); email and the other channels are allowed without one
   (soft opt-in), until revoked. A topic (the template's category) listed in the newest
   consent's ``proof.topics_declined`` (the preference page writes it) is blocked too.
3. Sender identity (marketing email only): the organization's settings must hold
   ``sender_name`` and ``physical_address`` (the footer carries them); otherwise blocked with
   "sender identity and physical address are required for marketing".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.models import Consent
from guestcomms.compliance.unsubscribe import SenderIdentity, sender_identity
from guestcomms.db.queue import ClaimedDelivery
from guestcomms.domain.enums import Channel
from guestcomms.messages.models import Message
from guestcomms.organizations.models import Organization
from guestcomms.templates.models import Template

MARKETING_CATEGORY_PREFIX = "marketing"
EMERGENCY_PRIORITY = 0
# suppression reasons that stop marketing only; every other reason stops everything
MARKETING_ONLY_REASONS = frozenset({"unsubscribe"})
# channels whose marketing needs an explicit, granted consent
EXPLICIT_CONSENT_CHANNELS = frozenset({Channel.SMS.value, Channel.VOICE.value})
IDENTITY_REQUIRED = "sender identity and physical address are required for marketing"


class Purpose(StrEnum):
    """Why a message is sent: it decides which opt-outs apply."""

    EMERGENCY = "emergency"
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


def is_marketing_category(category: str | None) -> bool:
    """Whether a template category makes its messages marketing."""
    return bool(category) and str(category).lower().startswith(MARKETING_CATEGORY_PREFIX)


def purpose_of(*, priority: int, category: str | None) -> Purpose:
    """The purpose of a message of ``priority`` from a template of ``category``."""
    if priority == EMERGENCY_PRIORITY:
        return Purpose.EMERGENCY
    return Purpose.MARKETING if is_marketing_category(category) else Purpose.TRANSACTIONAL


def consent_channel(channel: str) -> str:
    """The channel suppressions and consents are kept under: voice shares SMS's."""
    return Channel.SMS.value if channel == Channel.VOICE else channel


def decide(
    *,
    purpose: Purpose,
    channel: str,
    suppression: str | None,
    consent: bool | None,
    identity: SenderIdentity | None,
    topic: str | None = None,
    declined: frozenset[str] = frozenset(),
) -> str | None:
    """The reason a delivery of ``purpose`` on ``channel`` is blocked, or ``None`` to send.
    ``suppression`` is the address's suppression reason, ``consent`` the newest marketing
    consent's ``granted`` (``None``: none recorded), ``identity`` the organization's,
    ``declined`` the topics that consent declines."""
    if suppression is not None and (
        suppression not in MARKETING_ONLY_REASONS or purpose is Purpose.MARKETING
    ):
        return f"suppressed: {suppression} ({channel})"
    if purpose is not Purpose.MARKETING:
        return None
    return _marketing_block(
        channel=channel, consent=consent, identity=identity, topic=topic, declined=declined
    )


def _marketing_block(
    *,
    channel: str,
    consent: bool | None,
    identity: SenderIdentity | None,
    topic: str | None,
    declined: frozenset[str],
) -> str | None:
    if consent is False:
        return f"no marketing consent: revoked ({channel})"
    if consent is None and channel in EXPLICIT_CONSENT_CHANNELS:
        return f"no marketing consent: {channel} marketing needs explicit consent"
    if topic is not None and topic in declined:
        return f"no marketing consent: topic {topic} declined ({channel})"
    if channel == Channel.EMAIL and identity is None:
        return IDENTITY_REQUIRED
    return None


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's decisions for one batch."""

    blocked: dict[uuid.UUID, str] = field(default_factory=dict)
    # the marketing emails that go out, with the sender identity their footer shows
    marketing: dict[uuid.UUID, SenderIdentity] = field(default_factory=dict)


async def check_batch(
    session: AsyncSession,
    batch: Sequence[ClaimedDelivery],
    *,
    channels: Mapping[uuid.UUID, str | None],
    suppressed: Mapping[uuid.UUID, str],
) -> GateResult:
    """Decide every delivery of ``batch`` that has a channel (``channels``: the one the
    composer picked per delivery); ``suppressed``: each suppressed delivery's reason."""
    reachable = [d for d in batch if channels.get(d.id)]
    if not reachable:
        return GateResult()
    categories = await _categories(session, {d.message_id for d in reachable})
    purposes = {
        d.id: purpose_of(priority=d.priority, category=categories.get(d.message_id))
        for d in reachable
    }
    marketing = [d for d in reachable if purposes[d.id] is Purpose.MARKETING]
    consents = await _marketing_consents(session, {d.contact_id for d in marketing})
    identities = await _identities(session, {d.organization_id for d in marketing})
    result = GateResult()
    for delivery in reachable:
        channel = str(channels[delivery.id])
        identity = identities.get(delivery.organization_id)
        granted, declined = consents.get(
            (delivery.contact_id, consent_channel(channel)), (None, frozenset())
        )
        reason = decide(
            purpose=purposes[delivery.id],
            channel=channel,
            suppression=suppressed.get(delivery.id),
            consent=granted,
            identity=identity,
            topic=categories.get(delivery.message_id),
            declined=declined,
        )
        if reason is not None:
            result.blocked[delivery.id] = reason
        elif purposes[delivery.id] is Purpose.MARKETING and identity is not None:
            result.marketing[delivery.id] = identity
    return result


async def _categories(
    session: AsyncSession, message_ids: set[uuid.UUID]
) -> dict[uuid.UUID, str | None]:
    rows = await session.execute(
        select(Message.id, Template.category)
        .join(Template, Template.id == Message.template_id)
        .where(Message.id.in_(message_ids))
    )
    return {row.id: row.category for row in rows}


async def _marketing_consents(
    session: AsyncSession, contact_ids: set[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], tuple[bool, frozenset[str]]]:
    """The newest marketing consent's ``granted`` and declined topics per (contact,
    channel)."""
    if not contact_ids:
        return {}
    rows = await session.execute(
        select(Consent.contact_id, Consent.channel, Consent.granted, Consent.proof)
        .where(Consent.contact_id.in_(contact_ids), Consent.purpose == Purpose.MARKETING.value)
        .order_by(Consent.version, Consent.id)
    )
    return {  # ordered by version: the newest wins
        (row.contact_id, row.channel): (
            row.granted,
            frozenset((row.proof or {}).get("topics_declined") or ()),
        )
        for row in rows
    }


async def _identities(
    session: AsyncSession, organization_ids: set[uuid.UUID]
) -> dict[uuid.UUID, SenderIdentity]:
    if not organization_ids:
        return {}
    rows = await session.execute(
        select(Organization.id, Organization.settings).where(Organization.id.in_(organization_ids))
    )
    found = {row.id: sender_identity(row.settings) for row in rows}
    return {org: identity for org, identity in found.items() if identity is not None}
