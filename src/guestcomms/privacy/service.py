"""Privacy requests: what a contact's export holds, how a contact is erased, and a retention
run. Each function works in the caller's open transaction and records the request; none
commits (the route or the CLI command owns the transaction).

Erasure keeps the contact row as a *tombstone* (every personal field emptied), because its
deliveries cascade from it: so the history stays as anonymous rows (status, channel,
timestamps) that still add up in counts, while the contact's suppressions keep only the
keyed hash of the address (``compliance.hashing``), which the composer matches, so a
re-import of the same address is still suppressed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.compliance.hashing import normalise_address
from guestcomms.compliance.models import PrivacyRequest
from guestcomms.contacts.models import Contact
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import NotFoundError, ValidationFailedError
from guestcomms.privacy.repository import PrivacyRepository, organizations

# columns whose UUID is shown as the public id of its kind
_PUBLIC: dict[str, IdKind] = {
    "contact_id": IdKind.CONTACT,
    "delivery_id": IdKind.DELIVERY,
    "message_id": IdKind.MESSAGE,
    "event_id": IdKind.EVENT,
    "household_id": IdKind.HOUSEHOLD,
    "template_version_id": IdKind.TEMPLATE_VERSION,
}
# the kind of each section's own ``id``
_SECTION_KIND: dict[str, IdKind] = {
    "contact": IdKind.CONTACT,
    "deliveries": IdKind.DELIVERY,
    "inbox_items": IdKind.INBOX,
}
_INTERNAL = frozenset(
    {"organization_id", "lease_token", "lease_until", "address_hash", "email_hash", "phone_hash"}
)


def plain(row: Any, section: str) -> dict[str, Any]:
    """One ORM row as JSON-ready values: public ids, ISO timestamps, internal columns left
    out."""
    out: dict[str, Any] = {}
    for attr in inspect(row).mapper.column_attrs:
        if attr.key in _INTERNAL:
            continue
        value = getattr(row, attr.key)
        if isinstance(value, uuid.UUID):
            kind = _SECTION_KIND.get(section) if attr.key == "id" else _PUBLIC.get(attr.key)
            value = to_public(kind, value) if kind else str(value)
        elif isinstance(value, datetime | date | time):
            value = value.isoformat()
        out[attr.key] = value
    return out


def contact_addresses(contact: Contact) -> dict[str, str]:
    """The contact's suppressible addresses by suppression channel, normalised (a phone is
    suppressed as ``sms``, which also stops calls)."""
    addresses: dict[str, str] = {}
    if contact.email:
        addresses["email"] = normalise_address("email", contact.email)
    if contact.phone:
        addresses["sms"] = normalise_address("sms", contact.phone)
    return addresses


async def _contact(repo: PrivacyRepository, contact_id: uuid.UUID) -> Contact:
    contact = await repo.contact(contact_id)
    if contact is None:
        raise NotFoundError("contact not found")
    return contact


async def export_contact(
    repo: PrivacyRepository, contact_id: uuid.UUID, *, actor: str, fmt: str
) -> dict[str, list[dict[str, Any]]]:
    """Every row held about the contact, by section (``contact``, ``event_guests``,
    ``deliveries``, ``delivery_events``, ``consents``, ``suppressions``, ``inbox_items``,
    ``privacy_requests``), and the export recorded (counts only). Raises ``NotFoundError``."""
    contact = await _contact(repo, contact_id)
    sections: dict[str, list[dict[str, Any]]] = {"contact": [plain(contact, "contact")]}
    for name, rows in (await repo.holdings(contact.id)).items():
        sections[name] = [plain(row, name) for row in rows]
    suppressions = await repo.suppressions(repo.address_hashes(contact_addresses(contact)))
    sections["suppressions"] = [plain(row, "suppressions") for row in suppressions]
    await repo.record(
        kind="export",
        contact_id=contact.id,
        actor=actor,
        detail={"format": fmt, "rows": {name: len(rows) for name, rows in sections.items()}},
    )
    return sections


async def erase_contact(
    repo: PrivacyRepository, contact_id: uuid.UUID, *, actor: str
) -> PrivacyRequest:
    """Erase the contact in the caller's transaction: suppressions kept by keyed hash only,
    personal data deleted or nulled everywhere, the contact row left as a tombstone, and the
    request recorded with the hashes and counts. Raises ``NotFoundError``."""
    contact = await _contact(repo, contact_id)
    addresses = contact_addresses(contact)
    hashes = repo.address_hashes(addresses)
    suppressions = await repo.suppressions(hashes)
    for suppression in suppressions:
        await repo.hash_suppression(suppression)
    kept = await repo.scrub_contact_rows(contact.id, list(addresses.values()))
    contact.email = contact.phone = contact.first_name = contact.last_name = None
    contact.timezone = contact.locale = contact.webhook_url = None
    contact.attributes, contact.tags, contact.push_subscriptions = {}, [], []
    return await repo.record(
        kind="erase",
        contact_id=contact.id,
        actor=actor,
        detail={
            "address_hashes": hashes,
            "suppressions_kept": len(suppressions),
            "deliveries_kept": kept,
        },
    )


def retention_days(settings: dict[str, Any] | None) -> int | None:
    """An organization's ``settings["retention_days"]``, or ``None`` when it keeps everything.
    Raises ``ValidationFailedError`` when it is set but not a positive whole number."""
    value = (settings or {}).get("retention_days")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationFailedError(
            f"retention_days must be a whole number of days >= 1, got {value!r}",
            field="retention_days",
        )
    return value


async def apply_retention(
    repo: PrivacyRepository, *, days: int, actor: str, dry_run: bool = False
) -> dict[str, int]:
    """Anonymise what is older than ``days`` days (``PrivacyRepository.purge_before``) and
    record the run with its counts; with ``dry_run`` only count. Returns the counts."""
    cutoff = utc_now() - timedelta(days=days)
    counts = await repo.retention_counts(cutoff)
    if not dry_run:
        await repo.purge_before(cutoff)
        await repo.record(
            kind="retention",
            contact_id=None,
            actor=actor,
            detail={"retention_days": days, "cutoff": cutoff.isoformat(), **counts},
        )
    return counts


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """One organization's retention run: its id and name, the days kept, and the counts."""

    organization_id: uuid.UUID
    organization: str
    days: int
    counts: dict[str, int]


async def retention_runs(
    session: AsyncSession,
    *,
    organization: str | None,
    days: int | None,
    actor: str,
    dry_run: bool = False,
) -> list[RetentionRun]:
    """Apply each organization's retention policy (only ``organization``'s when named;
    ``days`` overrides ``settings["retention_days"]``) in the caller's transaction.
    Organizations without a policy are skipped. Raises ``NotFoundError`` for an unknown
    name, ``ValidationFailedError`` for a malformed ``retention_days``."""
    runs: list[RetentionRun] = []
    for org in await organizations(session, name=organization):
        kept = days if days is not None else retention_days(org.settings)
        if kept is None:
            continue
        counts = await apply_retention(
            PrivacyRepository(session, org.id), days=kept, actor=actor, dry_run=dry_run
        )
        runs.append(
            RetentionRun(organization_id=org.id, organization=org.name, days=kept, counts=counts)
        )
    return runs
