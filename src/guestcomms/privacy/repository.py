"""Every query of the privacy requests, scoped to one organization."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from guestcomms.compliance.hashing import address_hash
from guestcomms.compliance.models import Consent, PrivacyRequest, Suppression
from guestcomms.contacts.models import Contact, ContactTag
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.errors import NotFoundError
from guestcomms.events.models import EventGuest
from guestcomms.inbound.models import InboundEventRecord
from guestcomms.inbox.models import InboxItem
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.organizations.models import Organization
from guestcomms.outbox.models import OutboxMessage
from guestcomms.security.protection import protection_of

ERASED = "erased"  # what an erased contact's suppression keeps instead of the address
_SCAN_PAGE = 1000

# deliveries a retention run leaves alone: the worker still owns them
ACTIVE_STATUSES = (
    DeliveryStatus.SCHEDULED,
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.RETRYING,
    DeliveryStatus.HELD,
)


class PrivacyRepository:
    """Reads, scrubs and records what ``organization_id`` holds about its contacts."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def contact(self, contact_id: uuid.UUID) -> Contact | None:
        """The contact, or ``None`` if it is not this organization's."""
        return await self._session.scalar(
            select(Contact).where(Contact.id == contact_id, Contact.organization_id == self._org)
        )

    async def _all(self, stmt: Select[Any]) -> Sequence[Any]:
        return (await self._session.scalars(stmt)).all()

    def _deliveries_of(self, contact_id: uuid.UUID) -> Select[Any]:
        return select(Delivery.id).where(
            Delivery.organization_id == self._org, Delivery.contact_id == contact_id
        )

    # --- export -------------------------------------------------------------------------

    async def holdings(self, contact_id: uuid.UUID) -> dict[str, Sequence[Any]]:
        """Every row held about the contact, by section (the contact row itself apart)."""
        org = self._org
        return {
            "event_guests": await self._all(
                select(EventGuest)
                .where(EventGuest.organization_id == org, EventGuest.contact_id == contact_id)
                .order_by(EventGuest.id)
            ),
            "deliveries": await self._all(
                select(Delivery)
                .where(Delivery.organization_id == org, Delivery.contact_id == contact_id)
                .order_by(Delivery.id)
            ),
            "delivery_events": await self._all(
                select(DeliveryEvent)
                .where(
                    DeliveryEvent.organization_id == org,
                    DeliveryEvent.delivery_id.in_(self._deliveries_of(contact_id)),
                )
                .order_by(DeliveryEvent.id)
            ),
            "consents": await self._all(
                select(Consent)
                .where(Consent.organization_id == org, Consent.contact_id == contact_id)
                .order_by(Consent.id)
            ),
            "inbox_items": await self._all(
                select(InboxItem)
                .where(InboxItem.organization_id == org, InboxItem.contact_id == contact_id)
                .order_by(InboxItem.id)
            ),
            "privacy_requests": await self._all(
                select(PrivacyRequest)
                .where(
                    PrivacyRequest.organization_id == org, PrivacyRequest.contact_id == contact_id
                )
                .order_by(PrivacyRequest.id)
            ),
        }

    def address_hashes(self, addresses: dict[str, str]) -> dict[str, str]:
        """The keyed hash of each address (channel -> address)."""
        key = protection_of(self._session).hash_key
        return {channel: address_hash(key, channel, a) for channel, a in addresses.items()}

    async def suppressions(self, hashes: dict[str, str]) -> Sequence[Suppression]:
        """The suppressions of ``hashes`` (channel -> keyed hash of the address)."""
        if not hashes:
            return []
        return await self._all(
            select(Suppression)
            .where(
                Suppression.organization_id == self._org,
                or_(
                    *(
                        (Suppression.channel == channel) & (Suppression.address_hash == digest)
                        for channel, digest in hashes.items()
                    )
                ),
            )
            .order_by(Suppression.id)
        )

    # --- erasure ------------------------------------------------------------------------

    async def hash_suppression(self, suppression: Suppression) -> None:
        """Keep ``suppression`` by its keyed hash only (the address and detail go)."""
        suppression.address = ERASED
        suppression.detail = None

    async def scrub_contact_rows(self, contact_id: uuid.UUID, addresses: list[str]) -> int:
        """Remove or anonymise the personal data of the contact's rows in every table but
        ``contacts`` and ``suppressions``; return how many deliveries were kept (anonymous)."""
        org, deliveries = self._org, self._deliveries_of(contact_id)
        session = self._session
        await session.execute(delete(ContactTag).where(ContactTag.contact_id == contact_id))
        await session.execute(
            update(EventGuest)
            .where(EventGuest.organization_id == org, EventGuest.contact_id == contact_id)
            .values(dietary=None, attributes={}, table_name=None, side=None)
        )
        await session.execute(
            update(Consent)
            .where(Consent.organization_id == org, Consent.contact_id == contact_id)
            .values(proof=None)
        )
        await session.execute(
            update(DeliveryEvent)
            .where(DeliveryEvent.organization_id == org, DeliveryEvent.delivery_id.in_(deliveries))
            .values(detail=None)
        )
        outbox_match: ColumnElement[bool] = OutboxMessage.delivery_id.in_(deliveries)
        if addresses:
            outbox_match = or_(
                outbox_match,
                OutboxMessage.id.in_(
                    await self._mentioning(OutboxMessage.recipient, addresses, exact=True)
                ),
            )
        await session.execute(
            delete(OutboxMessage).where(OutboxMessage.organization_id == org, outbox_match)
        )
        await session.execute(
            delete(InboxItem).where(
                InboxItem.organization_id == org, InboxItem.contact_id == contact_id
            )
        )
        inbound_match = or_(
            InboundEventRecord.delivery_id.in_(deliveries),
            InboundEventRecord.id.in_(
                await self._mentioning(InboundEventRecord.raw, addresses, exact=False)
            ),
        )
        await session.execute(
            update(InboundEventRecord)
            .where(InboundEventRecord.organization_id == org, inbound_match)
            .values(raw=None)
        )
        kept = await session.execute(
            update(Delivery)
            .where(Delivery.organization_id == org, Delivery.contact_id == contact_id)
            .values(variables=None, last_error=None)
        )
        return int(getattr(kept, "rowcount", 0) or 0)

    async def _mentioning(
        self, column: InstrumentedAttribute[Any], addresses: list[str], *, exact: bool
    ) -> list[uuid.UUID]:
        """Ids of this organization's rows whose ``column`` is one of ``addresses`` (``exact``)
        or mentions one of them anywhere in its JSON. The column may be encrypted, so the
        rows are read and compared here, a page at a time (erasures are rare)."""
        if not addresses:
            return []
        model = column.class_
        wanted = {a.lower() for a in addresses}
        found: list[uuid.UUID] = []
        after: uuid.UUID | None = None
        while True:
            query = select(model.id, column).where(
                model.organization_id == self._org, column.is_not(None)
            )
            if after is not None:
                query = query.where(model.id > after)
            page = (await self._session.execute(query.order_by(model.id).limit(_SCAN_PAGE))).all()
            for row_id, value in page:
                text = (str(value) if exact else json.dumps(value)).lower()
                if text in wanted if exact else any(a in text for a in wanted):
                    found.append(row_id)
            if len(page) < _SCAN_PAGE:
                return found
            after = page[-1][0]

    # --- retention ----------------------------------------------------------------------

    def _old(self, cutoff: datetime) -> Select[Any]:
        return select(Delivery.id).where(
            Delivery.organization_id == self._org,
            Delivery.created_at < cutoff,
            Delivery.status.not_in([s.value for s in ACTIVE_STATUSES]),
        )

    async def _count(self, stmt: Select[Any]) -> int:
        return int(
            await self._session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        )

    async def retention_counts(self, cutoff: datetime) -> dict[str, int]:
        """What a retention run at ``cutoff`` would change (nothing changed)."""
        old = self._old(cutoff)
        return {
            "deliveries": await self._count(old),
            "delivery_events": await self._count(
                select(DeliveryEvent.id).where(
                    DeliveryEvent.organization_id == self._org,
                    DeliveryEvent.delivery_id.in_(old),
                    DeliveryEvent.detail.is_not(None),
                )
            ),
            "outbox_messages": await self._count(self._old_outbox(cutoff)),
            "inbound_events": await self._count(
                select(InboundEventRecord.id).where(
                    InboundEventRecord.organization_id == self._org,
                    InboundEventRecord.created_at < cutoff,
                    InboundEventRecord.raw.is_not(None),
                )
            ),
        }

    def _old_outbox(self, cutoff: datetime) -> Select[Any]:
        return select(OutboxMessage.id).where(
            OutboxMessage.organization_id == self._org,
            or_(
                OutboxMessage.created_at < cutoff, OutboxMessage.delivery_id.in_(self._old(cutoff))
            ),
        )

    async def purge_before(self, cutoff: datetime) -> None:
        """Anonymise the finished deliveries created before ``cutoff`` (variables and last
        error nulled, event details and raw inbound payloads dropped) and delete their outbox
        rows. The delivery rows stay, so counts by status and channel still add up."""
        org, old = self._org, self._old(cutoff)
        session = self._session
        await session.execute(
            update(DeliveryEvent)
            .where(DeliveryEvent.organization_id == org, DeliveryEvent.delivery_id.in_(old))
            .values(detail=None)
        )
        await session.execute(
            delete(OutboxMessage).where(OutboxMessage.id.in_(self._old_outbox(cutoff)))
        )
        await session.execute(
            update(InboundEventRecord)
            .where(
                InboundEventRecord.organization_id == org, InboundEventRecord.created_at < cutoff
            )
            .values(raw=None)
        )
        await session.execute(
            update(Delivery).where(Delivery.id.in_(old)).values(variables=None, last_error=None)
        )

    # --- records ------------------------------------------------------------------------

    async def record(
        self,
        *,
        kind: str,
        contact_id: uuid.UUID | None,
        actor: str,
        detail: dict[str, Any],
    ) -> PrivacyRequest:
        """Record a request carried out now."""
        request = PrivacyRequest(
            organization_id=self._org,
            contact_id=contact_id,
            kind=kind,
            status="done",
            actor=actor[:100],
            detail=detail,
            completed_at=utc_now(),
        )
        self._session.add(request)
        await self._session.flush()
        return request


async def organizations(session: AsyncSession, *, name: str | None) -> Sequence[Organization]:
    """Every organization by name, or only the one named ``name`` (``NotFoundError`` if
    there is none): a retention run reads each one's ``settings["retention_days"]``."""
    stmt = select(Organization).order_by(Organization.name)
    if name is not None:
        stmt = stmt.where(Organization.name == name)
    found = (await session.scalars(stmt)).all()
    if name is not None and not found:
        raise NotFoundError(f"no organization named {name!r}")
    return found
