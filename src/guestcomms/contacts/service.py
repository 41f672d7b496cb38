"""Contact logic: create, update, delete, and bulk import with a per-row error report.

Services never commit: the caller (the request, the CLI command) owns the transaction.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from guestcomms.campaigns.reminders import recheck_reminders
from guestcomms.contacts.importing import GUEST_COLUMNS, ContactImporter, Progress
from guestcomms.contacts.models import Contact
from guestcomms.contacts.repository import ContactRepository
from guestcomms.contacts.schemas import (
    ContactCreate,
    ContactOut,
    ContactUpdate,
    ImportReport,
)
from guestcomms.contacts.validation import normalize_phone
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, NotFoundError, ValidationFailedError
from guestcomms.events.repository import EventRepository
from guestcomms.security.ssrf import SsrfGuard

CSV_FIELDS = frozenset({"email", "phone", "first_name", "last_name", "timezone", "locale", "tags"})
CSV_TAG_SEPARATORS = (";", "|")


def to_out(contact: Contact) -> ContactOut:
    """The API view of a contact."""
    return ContactOut(
        id=to_public(IdKind.CONTACT, contact.id),
        email=contact.email,
        phone=contact.phone,
        first_name=contact.first_name,
        last_name=contact.last_name,
        timezone=contact.timezone,
        locale=contact.locale,
        attributes=contact.attributes or {},
        tags=contact.tags or [],
        webhook_url=contact.webhook_url,
        push_subscriptions=len(contact.push_subscriptions or []),
        created_at=contact.created_at,
        updated_at=contact.updated_at,
    )


class ContactService:
    """Contact use cases for one organization."""

    def __init__(
        self,
        repo: ContactRepository,
        *,
        default_phone_region: str | None = None,
        url_guard: SsrfGuard | None = None,
    ) -> None:
        """``url_guard`` refuses a ``webhook_url`` naming an internal address (422); names
        are judged again, resolved, at send time. Without one, URLs are not checked here."""
        self._repo = repo
        self._region = default_phone_region
        self._url_guard = url_guard

    def _check_webhook_url(self, value: object) -> None:
        if value is not None and self._url_guard is not None:
            self._url_guard.check_url(str(value), field="webhook_url")

    def _phone(self, value: str | None) -> str | None:
        if not value or value.startswith("+"):
            return value
        try:
            return normalize_phone(value, default_region=self._region)
        except ValueError as e:
            raise ValidationFailedError(str(e), field="phone") from e

    async def get(self, contact_id: uuid.UUID) -> Contact:
        """The contact; ``NotFoundError`` if it is not this organization's."""
        contact = await self._repo.get(contact_id)
        if contact is None:
            raise NotFoundError("contact not found")
        return contact

    async def create(self, data: ContactCreate) -> Contact:
        """Create a contact; ``ConflictError`` if its email is taken."""
        if not data.email and not data.phone:
            raise ValidationFailedError("a contact needs an email or a phone", field="email")
        self._check_webhook_url(data.webhook_url)
        if data.email and await self._repo.by_emails([data.email]):
            raise ConflictError(f"a contact with email {data.email} exists", field="email")
        contact = Contact(
            email=data.email,
            phone=self._phone(data.phone),
            first_name=data.first_name,
            last_name=data.last_name,
            timezone=data.timezone,
            locale=data.locale,
            attributes=data.attributes or {},
            tags=data.tags or [],
            webhook_url=str(data.webhook_url) if data.webhook_url else None,
            push_subscriptions=[
                s.model_dump(mode="json", exclude_none=True) for s in data.push_subscriptions or []
            ],
        )
        self._repo.add(contact)
        await self._repo.flush()
        await self._repo.replace_tags(contact.id, contact.tags)
        return contact

    async def update(self, contact_id: uuid.UUID, data: ContactUpdate) -> Contact:
        """Apply the fields present in ``data``; ``NotFoundError``/``ConflictError`` as usual."""
        contact = await self.get(contact_id)
        changes = data.model_dump(mode="json", exclude_unset=True, exclude_none=False)
        self._check_webhook_url(changes.get("webhook_url"))
        new_email = changes.get("email")
        if new_email and new_email != contact.email and await self._repo.by_emails([new_email]):
            raise ConflictError(f"a contact with email {new_email} exists", field="email")
        if "phone" in changes:
            changes["phone"] = self._phone(changes["phone"])
        for key, empty in (("attributes", {}), ("tags", []), ("push_subscriptions", [])):
            if key in changes and changes[key] is None:
                changes[key] = empty
        if changes.get("push_subscriptions"):
            changes["push_subscriptions"] = [
                {k: v for k, v in s.items() if v is not None} for s in changes["push_subscriptions"]
            ]
        for key, value in changes.items():
            setattr(contact, key, value)
        if not contact.email and not contact.phone:
            raise ValidationFailedError("a contact needs an email or a phone", field="email")
        self._check_webhook_url(data.webhook_url)
        if "tags" in changes:
            await self._repo.replace_tags(contact.id, contact.tags)
        await self._repo.flush()
        # a reminder's "while" condition may read any contact field: re-check it now, in
        # this transaction, so a change that ends the condition stops the reminders
        await recheck_reminders(
            self._repo.session, organization_id=self._repo.organization_id, contact_ids=[contact.id]
        )
        return contact

    async def delete(self, contact_id: uuid.UUID) -> None:
        """Delete the contact; ``NotFoundError`` if it is not this organization's."""
        await self._repo.delete(await self.get(contact_id))

    async def import_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        event_id: uuid.UUID | None = None,
        progress: Progress | None = None,
    ) -> ImportReport:
        """Create or update (matched by email) each valid row, and with ``event_id`` add or
        update each as a guest of that event; report each invalid row.

        Valid rows are kept even when others fail, so a file with one typo is not lost.
        Raises ``ValidationFailedError`` (field ``event_id``) if the event is not this
        organization's. ``progress`` is called with the number of rows done, chunk by chunk.
        """
        events = None
        if event_id is not None:
            events = EventRepository(self._repo.session, self._repo.organization_id)
            if await events.get(event_id) is None:
                raise ValidationFailedError(
                    f"unknown event {to_public(IdKind.EVENT, event_id)}", field="event_id"
                )
        importer = ContactImporter(
            self._repo,
            events=events,
            event_id=event_id,
            default_phone_region=self._region,
            url_guard=self._url_guard,
        )
        return await importer.run(rows, progress=progress)


def parse_csv(text: str, *, guest_columns: bool = False) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header; unknown columns become attributes, tags split on ; or |.

    With ``guest_columns`` (an import into an event), the guest columns (role, rsvp, side,
    table, dietary, household) are fields of the row rather than attributes of the contact.
    Raises ``ValidationFailedError`` if the file has no header row.
    """
    fields = CSV_FIELDS | GUEST_COLUMNS if guest_columns else CSV_FIELDS
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ValidationFailedError("the CSV file has no header row", field="file")
    rows: list[dict[str, Any]] = []
    for record in reader:
        row: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        for column, value in record.items():
            if column is None or value is None or value == "":
                continue
            key = column.strip()
            if key == "tags":
                row["tags"] = _split_tags(value)
            elif key in fields:
                row[key] = value
            else:
                attributes[key] = value
        if attributes:
            row["attributes"] = attributes
        rows.append(row)
    return rows


def _split_tags(value: str) -> list[str]:
    parts: Iterable[str] = [value]
    for sep in CSV_TAG_SEPARATORS:
        parts = [p for part in parts for p in part.split(sep)]
    return [p.strip() for p in parts if p.strip()]
