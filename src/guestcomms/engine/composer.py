"""Turns claimed deliveries into provider-ready items, on whichever channel reaches the guest.

For each delivery the composer picks the channel: the delivery's own, or, when the contact has
no address for it, the next one in the message's order of preference (push, then SMS, then
email...), remembering why each was skipped. The compliance gate (compliance/gate.py) blocks
what must not be sent (suppressions, consent, a marketing email without sender identity),
then it renders the template version's content for the channel in the sandbox (compiled once per
version, channel and locale variant; the variant and the locale dates and numbers are
formatted in come from the contact's locale, then the organization's default) and builds the
channel's item: an email with its deterministic Message-ID, an SMS, a call, a push
notification or an in-app message. An email of a message and organization with tracking on
(``tracking/rewrite.py``) gets its links wrapped in signed click redirects and an open pixel,
after the unsubscribe footer, whose link stays direct. What quiet hours or a frequency cap hold back
(engine/pacing.py) comes out as a :class:`DeferredError` with the instant it may go.

Loading (three or four queries per batch) happens in a session; rendering after it closes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.channels.base import (
    OutgoingCall,
    OutgoingEmail,
    OutgoingInApp,
    OutgoingItem,
    OutgoingPush,
    OutgoingSms,
    OutgoingWebhook,
    PushSubscription,
)
from guestcomms.channels.mime import address_domain, header_text
from guestcomms.compliance.gate import check_batch
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.compliance.unsubscribe import (
    SenderIdentity,
    UnsubscribeClaim,
    UnsubscribeLinks,
    footer_html,
    footer_text,
)
from guestcomms.contacts.models import Contact
from guestcomms.db.queue import ClaimedDelivery
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.engine.pacing import Deferral, PaceItem, Pacer
from guestcomms.events.context import EventContext, load_event_context
from guestcomms.messages.models import Message
from guestcomms.organizations.models import Organization
from guestcomms.templates.i18n import DEFAULT_LOCALE, babel_locale, candidates, choose_variant
from guestcomms.templates.models import TemplateVersion
from guestcomms.templates.sandbox import TemplateRenderer, TemplateRenderError, build_context
from guestcomms.tracking.rewrite import rewrite_for_tracking
from guestcomms.webhooks.repository import WebhookEndpointRepository
from guestcomms.webhooks.secrets import active_secrets

CACHE_ENTRIES = 4096  # versions and message facts are immutable, so caching is safe
# the contact field that is each channel's address, and what to say when it is missing
_ADDRESS_OF: dict[str, tuple[str, str]] = {
    Channel.EMAIL: ("email", "no email address"),
    Channel.SMS: ("phone", "no phone number"),
    Channel.VOICE: ("phone", "no phone number"),
    Channel.PUSH: ("push_subscriptions", "no push subscription"),
    Channel.WEBHOOK: ("webhook_url", "no webhook URL"),
    Channel.INAPP: ("id", "not a contact"),
}


class ComposeError(Exception):
    """A delivery cannot be turned into an item (render failure, no address): permanent."""

    def __init__(self, message: str, *, skipped: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(message)
        self.skipped: list[dict[str, str]] = list(skipped)


class BlockedError(ComposeError):
    """The compliance gate stops this delivery (a suppressed address); recorded as blocked."""


class DeferredError(ComposeError):
    """Quiet hours or a frequency cap hold this delivery until ``until``: rescheduled."""

    def __init__(
        self, message: str, *, until: datetime, skipped: Sequence[dict[str, str]] = ()
    ) -> None:
        super().__init__(message, skipped=skipped)
        self.until = until


class _UnreachableError(Exception):
    """A builder found the address unusable (an unregistered webhook URL)."""


@dataclass(frozen=True, slots=True)
class Composed:
    """A delivery's item, the channel it goes out on, and the channels passed over (why)."""

    item: OutgoingItem
    channel: str
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Version:
    subject: str | None
    html: str | None
    text: str | None
    channel_content: dict[str, dict[str, Any]]
    # locale variants, each already merged with the base: {"fr": _Version(...)}
    variants: dict[str, _Version] = field(default_factory=dict)

    def localized(self, variant: str | None) -> _Version:
        """The content of locale ``variant`` (``None``: the base)."""
        return self if variant is None else self.variants[variant]


def _version(
    *,
    subject: str | None,
    html: str | None,
    text: str | None,
    channel_content: dict[str, dict[str, Any]],
    locales: dict[str, dict[str, Any]],
) -> _Version:
    """A version with its locale variants merged over the base: a variant with a subject
    replaces the email parts as a whole, and each channel it has replaces that channel's."""
    variants = {}
    for tag, override in locales.items():
        parts = channel_content | (override.get("channel_content") or {})
        if override.get("subject") is None:
            variants[tag] = _Version(subject, html, text, parts)
        else:
            variants[tag] = _Version(
                override["subject"], override.get("html"), override.get("text"), parts
            )
    return _Version(subject, html, text, channel_content, variants)


@dataclass(frozen=True, slots=True)
class Localized:
    """The locale variant rendered for a delivery (``None``: the base content) and the
    locale its dates and numbers are formatted in."""

    variant: str | None
    locale: str


@dataclass(frozen=True, slots=True)
class _MessageFacts:
    variables: dict[str, Any]
    channels: list[str]
    event_id: uuid.UUID | None = None  # the event the message is about: `event`, `guest`
    tracking: bool = True  # the message's switch; the organization's is read per batch


@dataclass(frozen=True, slots=True)
class _Plan:
    channel: str | None
    address: Any
    skipped: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Loaded:
    """What :meth:`Composer.load` read and decided for one batch."""

    contacts: dict[uuid.UUID, dict[str, Any]]
    plans: dict[uuid.UUID, _Plan]
    suppressed: dict[uuid.UUID, str]
    webhook_secrets: dict[tuple[uuid.UUID, str], list[str]] = field(default_factory=dict)
    localized: dict[uuid.UUID, Localized] = field(default_factory=dict)
    events: EventContext = field(default_factory=EventContext)
    deferred: dict[uuid.UUID, Deferral] = field(default_factory=dict)  # quiet hours, caps
    # marketing emails cleared by the compliance gate, with their footer's sender identity
    marketing: dict[uuid.UUID, SenderIdentity] = field(default_factory=dict)
    # emails to send with open and click tracking (message and organization switches on)
    tracked: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True, slots=True)
class TrackingLinks:
    """What tracking needs: the MAC key (``tracking.tokens.tracking_key``) and the public
    base URL the pixel and redirects are served from."""

    key: bytes
    base_url: str


class _Lru(OrderedDict[uuid.UUID, Any]):
    def remember(self, key: uuid.UUID, value: Any) -> None:
        self[key] = value
        if len(self) > CACHE_ENTRIES:
            self.popitem(last=False)


def message_id_for(delivery_id: uuid.UUID, *, domain: str) -> str:
    """The Message-ID of a delivery: the same on every attempt, so duplicates are detectable."""
    return f"<{delivery_id.hex}@{domain}>"


def plan_channel(
    *, current: str, preferences: Sequence[str], contact: Mapping[str, Any] | None
) -> _Plan:
    """The first channel, from ``current`` on in ``preferences``, the contact can be reached
    on, with its address; and the channels passed over, each with the reason."""
    if contact is None:
        return _Plan(None, None, [{"channel": current, "reason": "the contact no longer exists"}])
    order = list(preferences) or [current]
    start = order.index(current) if current in order else 0
    skipped: list[dict[str, str]] = []
    for channel in order[start:]:
        field_name, missing = _ADDRESS_OF.get(channel, ("", "unknown channel"))
        address = contact.get(field_name) if field_name else None
        if address:
            return _Plan(channel, address, skipped)
        skipped.append({"channel": channel, "reason": missing})
    return _Plan(None, None, skipped)


class Composer:
    """Builds items for a batch of claimed deliveries. One per worker; caches are per process."""

    def __init__(
        self,
        *,
        sender: str,
        reply_to: str | None = None,
        message_id_domain: str | None = None,
        renderer: TemplateRenderer | None = None,
        pacer: Pacer | None = None,
        unsubscribe: UnsubscribeLinks | None = None,
        tracking: TrackingLinks | None = None,
    ) -> None:
        self._unsubscribe = unsubscribe  # None: marketing emails get no links (tests, previews)
        self._tracking = tracking  # None: no email is tracked (tests, previews)
        self._sender = sender
        self._reply_to = reply_to
        self._domain = message_id_domain or address_domain(sender)
        self._renderer = renderer or TemplateRenderer()
        self._pacer = pacer  # None: no quiet hours or caps (previews)
        self._versions: _Lru = _Lru()
        self._messages: _Lru = _Lru()
        self._builders: dict[str, Callable[..., OutgoingItem]] = {
            Channel.EMAIL: self._email,
            Channel.SMS: self._sms,
            Channel.VOICE: self._call,
            Channel.PUSH: self._push,
            Channel.INAPP: self._inapp,
            Channel.WEBHOOK: self._webhook,
        }

    async def load(self, session: AsyncSession, batch: Sequence[ClaimedDelivery]) -> Loaded:
        """Read what rendering ``batch`` needs, in a few queries, and pick each channel. Call
        :meth:`render` after the session is closed: on SQLite an open transaction holds the
        write lock, and other lanes should claim and record while this one renders."""
        contacts = await self._load_contacts(session, batch)
        await self._load_versions(session, batch)
        await self._load_messages(session, batch)
        plans = {
            d.id: plan_channel(
                current=d.channel,
                preferences=self._messages[d.message_id].channels,
                contact=contacts.get(d.contact_id),
            )
            for d in batch
        }
        gate = await check_batch(  # the compliance gate: see compliance/gate.py
            session,
            batch,
            channels={d: plan.channel for d, plan in plans.items()},
            suppressed=await self._suppressed(session, batch, plans),
        )
        loaded = Loaded(
            contacts=contacts,
            plans=plans,
            suppressed=gate.blocked,
            marketing=gate.marketing,
            webhook_secrets=await self._webhook_secrets(session, batch, plans),
            tracked=await self._tracked(session, batch, plans),
            localized=await self._localize(session, batch, contacts),
            events=await load_event_context(
                session,
                (
                    (event_id, d.contact_id)
                    for d in batch
                    if (event_id := self._messages[d.message_id].event_id) is not None
                ),
            ),
        )
        if self._pacer is None:
            return loaded
        return dataclasses.replace(
            loaded, deferred=await self._pacer.deferrals(session, self._pace_items(batch, loaded))
        )

    async def _localize(
        self,
        session: AsyncSession,
        batch: Sequence[ClaimedDelivery],
        contacts: dict[uuid.UUID, dict[str, Any]],
    ) -> dict[uuid.UUID, Localized]:
        """Each delivery's locale variant and formatting locale: the contact's locale, its
        language, then the organization's default locale, then the base content (and
        English for formatting). One small query for the organizations' default locales."""
        rows = await session.execute(
            select(Organization.id, Organization.locale).where(
                Organization.id.in_({d.organization_id for d in batch})
            )
        )
        defaults: dict[uuid.UUID, str | None] = {row.id: row.locale for row in rows}
        localized: dict[uuid.UUID, Localized] = {}
        for delivery in batch:
            contact = contacts.get(delivery.contact_id) or {}
            # a free-text locale Babel cannot read formats like the organization's default
            readable = contact.get("locale") if candidates(contact.get("locale")) else None
            locale = readable or defaults.get(delivery.organization_id)
            version: _Version | None = self._versions.get(delivery.template_version_id)
            variant = choose_variant(
                version.variants if version else {},
                locale=contact.get("locale"),
                default_locale=defaults.get(delivery.organization_id),
            )
            localized[delivery.id] = Localized(variant, locale or DEFAULT_LOCALE)
        return localized

    async def _tracked(
        self,
        session: AsyncSession,
        batch: Sequence[ClaimedDelivery],
        plans: dict[uuid.UUID, _Plan],
    ) -> frozenset[uuid.UUID]:
        """The emails of ``batch`` to track: the message's ``tracking`` is on and the
        organization's settings do not say ``"tracking": false``. At most one query."""
        if self._tracking is None:
            return frozenset()
        emails = [
            d
            for d in batch
            if plans[d.id].channel == Channel.EMAIL and self._messages[d.message_id].tracking
        ]
        if not emails:
            return frozenset()
        rows = await session.execute(
            select(Organization.id, Organization.settings).where(
                Organization.id.in_({d.organization_id for d in emails})
            )
        )
        off = {row.id for row in rows if (row.settings or {}).get("tracking") is False}
        return frozenset(d.id for d in emails if d.organization_id not in off)

    async def _webhook_secrets(
        self,
        session: AsyncSession,
        batch: Sequence[ClaimedDelivery],
        plans: dict[uuid.UUID, _Plan],
    ) -> dict[tuple[uuid.UUID, str], list[str]]:
        """The signing secrets of the registered endpoints this batch posts to."""
        urls: dict[uuid.UUID, set[str]] = {}
        for delivery in batch:
            plan = plans[delivery.id]
            if plan.channel == Channel.WEBHOOK:
                urls.setdefault(delivery.organization_id, set()).add(str(plan.address))
        now = utc_now()
        found: dict[tuple[uuid.UUID, str], list[str]] = {}
        for org, wanted in urls.items():
            endpoints = await WebhookEndpointRepository(session, org).by_urls(wanted)
            for url, endpoint in endpoints.items():
                found[(org, url)] = active_secrets(endpoint.secrets, now=now)
        return found

    def _pace_items(self, batch: Sequence[ClaimedDelivery], loaded: Loaded) -> list[PaceItem]:
        """What pacing needs of each sendable delivery: its channel and candidate zones."""
        items = []
        for d in batch:
            channel = loaded.plans[d.id].channel
            if channel is None or d.id in loaded.suppressed:
                continue
            event = loaded.events.event(self._messages[d.message_id].event_id) or {}
            items.append(
                PaceItem(
                    delivery_id=d.id,
                    organization_id=d.organization_id,
                    contact_id=d.contact_id,
                    channel=channel,
                    priority=d.priority,
                    contact_zone=(loaded.contacts.get(d.contact_id) or {}).get("timezone"),
                    event_zone=event.get("timezone"),
                )
            )
        return items

    def render(
        self, batch: Sequence[ClaimedDelivery], loaded: Loaded
    ) -> list[Composed | ComposeError]:
        """One item or one :class:`ComposeError` per claimed delivery, in order (a
        :class:`DeferredError` for one that quiet hours or a frequency cap hold)."""
        return [_deferred(d, loaded) or self._compose_one(d, loaded) for d in batch]

    async def preview(
        self,
        session: AsyncSession,
        delivery: ClaimedDelivery,
        *,
        variables: Mapping[str, Any],
        channels: Sequence[str],
        event_id: uuid.UUID | None = None,
    ) -> tuple[Composed | ComposeError, Loaded]:
        """Compose ``delivery`` (built for a preview, not a claimed row) exactly as a worker
        would, with the message's ``variables``, ``channels`` and event given instead of read
        from a message row. Use a fresh composer per preview: the facts given are cached."""
        facts = _MessageFacts(dict(variables), [*channels], event_id)
        self._messages.remember(delivery.message_id, facts)
        loaded = await self.load(session, [delivery])
        return self.render([delivery], loaded)[0], loaded

    def _compose_one(self, delivery: ClaimedDelivery, loaded: Loaded) -> Composed | ComposeError:
        plan = loaded.plans[delivery.id]
        if plan.channel is None:
            reasons = "; ".join(f"{s['channel']}: {s['reason']}" for s in plan.skipped)
            return ComposeError(
                f"no channel reaches this contact ({reasons})", skipped=plan.skipped
            )
        if delivery.id in loaded.suppressed:
            return BlockedError(loaded.suppressed[delivery.id], skipped=plan.skipped)
        contact = loaded.contacts[delivery.contact_id]
        facts: _MessageFacts = self._messages[delivery.message_id]
        variables = {**facts.variables, **(delivery.variables or {})}
        try:
            item = self._builders[plan.channel](
                delivery,
                contact=contact,
                address=plan.address,
                context=build_context(
                    contact=contact,
                    variables=variables,
                    event=loaded.events.event(facts.event_id),
                    guest=loaded.events.guest(facts.event_id, delivery.contact_id),
                ),
                loaded=loaded,
            )
        except TemplateRenderError as e:
            return ComposeError(f"render failed: {e}", skipped=plan.skipped)
        except KeyError as e:
            return ComposeError(f"the template has no {plan.channel} content ({e})")
        except _UnreachableError as e:
            return ComposeError(str(e), skipped=plan.skipped)
        return Composed(item=item, channel=plan.channel, skipped=plan.skipped)

    def _part(
        self,
        delivery: ClaimedDelivery,
        channel: str,
        *,
        title: str | None,
        body: str,
        context: Any,
        loaded: Loaded,
    ) -> tuple[str, str]:
        """Render one channel's title (collapsed to one line) and body."""
        localized = loaded.localized[delivery.id]
        content = self._renderer.render(
            key=(delivery.template_version_id, channel, localized.variant),
            subject=title,
            html=None,
            text=body,
            context=context,
            locale=babel_locale(localized.locale),
        )
        return content.subject, content.text

    def _email(
        self,
        delivery: ClaimedDelivery,
        *,
        contact: dict[str, Any],
        address: str,
        context: Any,
        loaded: Loaded,
    ) -> OutgoingEmail:
        localized = loaded.localized[delivery.id]
        version = self._versions[delivery.template_version_id].localized(localized.variant)
        content = self._renderer.render(
            key=(delivery.template_version_id, localized.variant),
            subject=version.subject,
            html=version.html,
            text=version.text,
            context=context,
            locale=babel_locale(localized.locale),
        )
        name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
        name = header_text(name)  # names are refused with line breaks, but rows may predate it
        text, html, headers = content.text, content.html, {}
        identity = loaded.marketing.get(delivery.id)
        if identity is not None and self._unsubscribe is not None:
            claim = UnsubscribeClaim(
                delivery.organization_id, delivery.contact_id, Channel.EMAIL.value, delivery.id
            )
            url = self._unsubscribe.url(claim)
            headers = self._unsubscribe.headers(claim)
            text = text + footer_text(identity, url)
            html = html + footer_html(identity, url) if html is not None else None
        if delivery.id in loaded.tracked:
            text, html = self._track(delivery, text=text, html=html)
        return OutgoingEmail(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            message_id=message_id_for(delivery.id, domain=self._domain),
            sender=self._sender,
            recipient=address,
            recipient_name=name or None,
            subject=content.subject,
            text=text,
            html=html,
            reply_to=self._reply_to,
            headers=headers,
        )

    def _track(
        self, delivery: ClaimedDelivery, *, text: str, html: str | None
    ) -> tuple[str, str | None]:
        """``text`` and ``html`` with click redirects and (in the HTML) an open pixel."""
        if self._tracking is None:  # pragma: no cover - load() tracks nothing then
            return text, html
        tracked = rewrite_for_tracking(
            key=self._tracking.key,
            base_url=self._tracking.base_url,
            organization_id=delivery.organization_id,
            delivery_id=delivery.id,
            html=html,
            text=text,
        )
        return tracked.text if tracked.text is not None else text, tracked.html

    def _content(self, delivery: ClaimedDelivery, channel: str, loaded: Loaded) -> dict[str, Any]:
        version: _Version = self._versions[delivery.template_version_id]
        return version.localized(loaded.localized[delivery.id].variant).channel_content[channel]

    def _sms(
        self,
        delivery: ClaimedDelivery,
        *,
        contact: dict[str, Any],
        address: str,
        context: Any,
        loaded: Loaded,
    ) -> OutgoingSms:
        source = self._content(delivery, Channel.SMS, loaded)
        _, body = self._part(
            delivery, Channel.SMS, title=None, body=source["body"], context=context, loaded=loaded
        )
        return OutgoingSms(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            to=address,
            body=body,
        )

    def _call(
        self,
        delivery: ClaimedDelivery,
        *,
        contact: dict[str, Any],
        address: str,
        context: Any,
        loaded: Loaded,
    ) -> OutgoingCall:
        source = self._content(delivery, Channel.VOICE, loaded)
        _, say = self._part(
            delivery, Channel.VOICE, title=None, body=source["say"], context=context, loaded=loaded
        )
        return OutgoingCall(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            to=address,
            say=say,
            language=contact.get("locale") or "en-US",
        )

    def _push(
        self,
        delivery: ClaimedDelivery,
        *,
        contact: dict[str, Any],
        address: list[dict[str, Any]],
        context: Any,
        loaded: Loaded,
    ) -> OutgoingPush:
        source = self._content(delivery, Channel.PUSH, loaded)
        title, body = self._part(
            delivery,
            Channel.PUSH,
            title=source["title"],
            body=source["body"],
            context=context,
            loaded=loaded,
        )
        subscription = address[0]  # the newest subscription is kept first
        keys = subscription.get("keys") or {}
        return OutgoingPush(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            subscription=PushSubscription(
                endpoint=subscription.get("endpoint"),
                p256dh=keys.get("p256dh"),
                auth=keys.get("auth"),
                fcm_token=subscription.get("fcm_token"),
            ),
            title=title,
            body=body,
            url=source.get("url"),
            urgency="high" if delivery.priority == 0 else "normal",
        )

    def _webhook(
        self,
        delivery: ClaimedDelivery,
        *,
        contact: dict[str, Any],
        address: str,
        context: Any,
        loaded: Loaded,
    ) -> OutgoingWebhook:
        secrets = loaded.webhook_secrets.get((delivery.organization_id, address))
        if not secrets:
            raise _UnreachableError(f"{address} is not a registered webhook endpoint")
        source = self._content(delivery, Channel.WEBHOOK, loaded)
        event_type, body = self._part(
            delivery,
            Channel.WEBHOOK,
            title=source["event_type"],
            body=source["body"],
            context=context,
            loaded=loaded,
        )
        return OutgoingWebhook(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            url=address,
            secrets=secrets,
            event_type=event_type,
            payload={
                "delivery_id": to_public(IdKind.DELIVERY, delivery.id),
                "message_id": to_public(IdKind.MESSAGE, delivery.message_id),
                "contact_id": to_public(IdKind.CONTACT, delivery.contact_id),
                "body": body,
            },
        )

    def _inapp(
        self,
        delivery: ClaimedDelivery,
        *,
        contact: dict[str, Any],
        address: Any,
        context: Any,
        loaded: Loaded,
    ) -> OutgoingInApp:
        source = self._content(delivery, Channel.INAPP, loaded)
        title, body = self._part(
            delivery,
            Channel.INAPP,
            title=source["title"],
            body=source["body"],
            context=context,
            loaded=loaded,
        )
        return OutgoingInApp(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            contact_id=delivery.contact_id,
            title=title,
            body=body,
            url=source.get("url"),
            requires_ack=bool(source.get("requires_ack")),
        )

    async def _suppressed(
        self,
        session: AsyncSession,
        batch: Sequence[ClaimedDelivery],
        plans: dict[uuid.UUID, _Plan],
    ) -> dict[uuid.UUID, str]:
        """The deliveries whose address is suppressed on their channel, with the reason."""
        wanted: dict[tuple[uuid.UUID, str], dict[uuid.UUID, str]] = {}
        for delivery in batch:
            plan = plans[delivery.id]
            if plan.channel in (Channel.EMAIL, Channel.SMS, Channel.VOICE):
                key = (delivery.organization_id, _suppression_channel(plan.channel))
                wanted.setdefault(key, {})[delivery.id] = str(plan.address)
        blocked: dict[uuid.UUID, str] = {}
        for (org, channel), addresses in wanted.items():
            reasons = await SuppressionRepository(session, org).reasons(channel, addresses.values())
            for delivery_id, address in addresses.items():
                if address in reasons:
                    blocked[delivery_id] = reasons[address]
        return blocked

    async def _load_contacts(
        self, session: AsyncSession, batch: Sequence[ClaimedDelivery]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        ids = {d.contact_id for d in batch}
        rows = await session.execute(
            select(
                Contact.id,
                Contact.email,
                Contact.phone,
                Contact.first_name,
                Contact.last_name,
                Contact.timezone,
                Contact.locale,
                Contact.attributes,
                Contact.tags,
                Contact.push_subscriptions,
                Contact.webhook_url,
            ).where(Contact.id.in_(ids))
        )
        return {row.id: row._asdict() for row in rows}

    async def _load_versions(self, session: AsyncSession, batch: Sequence[ClaimedDelivery]) -> None:
        missing = {d.template_version_id for d in batch} - self._versions.keys()
        if not missing:
            return
        rows = await session.execute(
            select(
                TemplateVersion.id,
                TemplateVersion.subject,
                TemplateVersion.html,
                TemplateVersion.text,
                TemplateVersion.channel_content,
                TemplateVersion.locales,
            ).where(TemplateVersion.id.in_(missing))
        )
        for row in rows:
            self._versions.remember(
                row.id,
                _version(
                    subject=row.subject,
                    html=row.html,
                    text=row.text,
                    channel_content=row.channel_content or {},
                    locales=row.locales or {},
                ),
            )

    async def _load_messages(self, session: AsyncSession, batch: Sequence[ClaimedDelivery]) -> None:
        missing = {d.message_id for d in batch} - self._messages.keys()
        if not missing:
            return
        rows = await session.execute(
            select(
                Message.id,
                Message.variables,
                Message.channels,
                Message.channel,
                Message.event_id,
                Message.tracking,
            ).where(Message.id.in_(missing))
        )
        for row in rows:
            self._messages.remember(
                row.id,
                _MessageFacts(
                    row.variables or {},
                    list(row.channels or [row.channel]),
                    row.event_id,
                    row.tracking,
                ),
            )


def _deferred(delivery: ClaimedDelivery, loaded: Loaded) -> DeferredError | None:
    # never a suppressed or unreachable delivery: pacing only sees sendable ones
    deferral = loaded.deferred.get(delivery.id)
    if deferral is None:
        return None
    skipped = loaded.plans[delivery.id].skipped
    return DeferredError(deferral.reason, until=deferral.until, skipped=skipped)


def _suppression_channel(channel: str) -> str:
    # an SMS STOP also stops calls to the number: both are suppressed as "sms"
    return Channel.SMS.value if channel == Channel.VOICE else channel
