"""Turns claimed deliveries into provider-ready emails: loads what rendering needs in bulk,
renders through the template sandbox (compiled once per immutable version), and builds the
:class:`~guestcomms.channels.base.OutgoingEmail` with its deterministic Message-ID.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.channels.base import OutgoingEmail
from guestcomms.channels.mime import address_domain
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.contacts.models import Contact
from guestcomms.db.queue import ClaimedDelivery
from guestcomms.messages.models import Message
from guestcomms.templates.models import TemplateVersion
from guestcomms.templates.sandbox import TemplateRenderer, TemplateRenderError, build_context

CACHE_ENTRIES = 4096  # versions and message variables are immutable, so caching is safe


class ComposeError(Exception):
    """A delivery cannot be turned into an email (render failure, no address): permanent."""


class BlockedError(ComposeError):
    """The compliance gate stops this delivery (a suppressed address); recorded as blocked."""


@dataclass(frozen=True, slots=True)
class _VersionContent:
    subject: str | None
    html: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class Loaded:
    """What :meth:`Composer.load` read for one batch."""

    contacts: dict[uuid.UUID, dict[str, Any]]
    suppressed: dict[uuid.UUID, str]


class _Lru(OrderedDict[uuid.UUID, Any]):
    def remember(self, key: uuid.UUID, value: Any) -> None:
        self[key] = value
        if len(self) > CACHE_ENTRIES:
            self.popitem(last=False)


def message_id_for(delivery_id: uuid.UUID, *, domain: str) -> str:
    """The Message-ID of a delivery: the same on every attempt, so duplicates are detectable."""
    return f"<{delivery_id.hex}@{domain}>"


class Composer:
    """Builds emails for a batch of claimed deliveries. One per worker; caches are per process."""

    def __init__(
        self,
        *,
        sender: str,
        reply_to: str | None = None,
        message_id_domain: str | None = None,
        renderer: TemplateRenderer | None = None,
    ) -> None:
        self._sender = sender
        self._reply_to = reply_to
        self._domain = message_id_domain or address_domain(sender)
        self._renderer = renderer or TemplateRenderer()
        self._versions: _Lru = _Lru()
        self._message_variables: _Lru = _Lru()

    async def load(self, session: AsyncSession, batch: Sequence[ClaimedDelivery]) -> Loaded:
        """Read what rendering ``batch`` needs, in a few queries. Call :meth:`render` after
        the session is closed: on SQLite an open transaction holds the write lock, and other
        lanes should be able to claim and record while this one renders."""
        contacts = await self._load_contacts(session, batch)
        await self._load_versions(session, batch)
        await self._load_message_variables(session, batch)
        return Loaded(
            contacts=contacts, suppressed=await self._suppressed(session, batch, contacts)
        )

    def render(
        self, batch: Sequence[ClaimedDelivery], loaded: Loaded
    ) -> list[OutgoingEmail | ComposeError]:
        """One email or one :class:`ComposeError` per claimed delivery, in order."""
        return [
            BlockedError(f"suppressed: {loaded.suppressed[d.id]}")
            if d.id in loaded.suppressed
            else self._compose_one(d, loaded.contacts.get(d.contact_id))
            for d in batch
        ]

    async def _suppressed(
        self,
        session: AsyncSession,
        batch: Sequence[ClaimedDelivery],
        contacts: dict[uuid.UUID, dict[str, Any]],
    ) -> dict[uuid.UUID, str]:
        """The deliveries whose address is suppressed on their channel, with the reason."""
        by_org: dict[uuid.UUID, list[ClaimedDelivery]] = {}
        for delivery in batch:
            by_org.setdefault(delivery.organization_id, []).append(delivery)
        blocked: dict[uuid.UUID, str] = {}
        for org, deliveries in by_org.items():
            addresses = {
                d.id: (contacts.get(d.contact_id) or {}).get("email") or "" for d in deliveries
            }
            reasons = await SuppressionRepository(session, org).reasons(
                "email", [a for a in addresses.values() if a]
            )
            for delivery_id, address in addresses.items():
                if address.lower() in reasons:
                    blocked[delivery_id] = reasons[address.lower()]
        return blocked

    def _compose_one(
        self, delivery: ClaimedDelivery, contact: dict[str, Any] | None
    ) -> OutgoingEmail | ComposeError:
        if contact is None:
            return ComposeError("the contact no longer exists")
        if not contact.get("email"):
            return ComposeError("the contact has no email address")
        version: _VersionContent = self._versions[delivery.template_version_id]
        variables = {
            **self._message_variables[delivery.message_id],
            **(delivery.variables or {}),
        }
        try:
            content = self._renderer.render(
                key=delivery.template_version_id,
                subject=version.subject,
                html=version.html,
                text=version.text,
                context=build_context(contact=contact, variables=variables),
            )
        except TemplateRenderError as e:
            return ComposeError(f"render failed: {e}")
        name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
        return OutgoingEmail(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            idempotency_key=delivery.idempotency_key,
            message_id=message_id_for(delivery.id, domain=self._domain),
            sender=self._sender,
            recipient=contact["email"],
            recipient_name=name or None,
            subject=content.subject,
            text=content.text,
            html=content.html,
            reply_to=self._reply_to,
        )

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
            ).where(TemplateVersion.id.in_(missing))
        )
        for row in rows:
            self._versions.remember(row.id, _VersionContent(row.subject, row.html, row.text))

    async def _load_message_variables(
        self, session: AsyncSession, batch: Sequence[ClaimedDelivery]
    ) -> None:
        missing = {d.message_id for d in batch} - self._message_variables.keys()
        if not missing:
            return
        rows = await session.execute(
            select(Message.id, Message.variables).where(Message.id.in_(missing))
        )
        for row in rows:
            self._message_variables.remember(row.id, row.variables or {})
