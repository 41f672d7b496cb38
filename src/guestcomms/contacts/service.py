"""Contact logic: create, update, delete, and bulk import with a per-row error report.

Services never commit: the caller (the request, the CLI command) owns the transaction.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from guestcomms.contacts.models import Contact
from guestcomms.contacts.repository import ContactRepository
from guestcomms.contacts.schemas import (
    ContactCreate,
    ContactOut,
    ContactUpdate,
    ImportReport,
    RowError,
)
from guestcomms.contacts.validation import normalize_phone
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, NotFoundError, ValidationFailedError

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

    def __init__(self, repo: ContactRepository, *, default_phone_region: str | None = None) -> None:
        self._repo = repo
        self._region = default_phone_region

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
        if "tags" in changes:
            await self._repo.replace_tags(contact.id, contact.tags)
        await self._repo.flush()
        return contact

    async def delete(self, contact_id: uuid.UUID) -> None:
        """Delete the contact; ``NotFoundError`` if it is not this organization's."""
        await self._repo.delete(await self.get(contact_id))

    async def import_rows(self, rows: Sequence[Mapping[str, Any]]) -> ImportReport:
        """Create or update (matched by email) each valid row; report each invalid one.

        Valid rows are kept even when others fail, so a file with one typo is not lost.
        """
        errors: list[RowError] = []
        valid: list[tuple[int, ContactCreate]] = []
        for number, raw in enumerate(rows, start=1):
            try:
                data = ContactCreate.model_validate(raw)
                if not data.email and not data.phone:
                    raise ValidationFailedError(
                        "a contact needs an email or a phone", field="email"
                    )
                if data.phone:  # assigning None would mark phone as set and erase it on update
                    data.phone = self._phone(data.phone)
            except ValidationError as e:
                first = e.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or None
                errors.append(RowError(row=number, field=field, message=first["msg"]))
                continue
            except ValidationFailedError as e:
                errors.append(RowError(row=number, field=e.field, message=e.message))
                continue
            valid.append((number, data))
        existing = await self._repo.by_emails(d.email for _, d in valid if d.email)
        created = updated = 0
        for _, data in valid:
            contact = existing.get(data.email) if data.email else None
            if contact is None:
                contact = await self.create(data)
                if contact.email:
                    existing[contact.email] = contact
                created += 1
            else:
                await self.update(contact.id, ContactUpdate(**data.model_dump(exclude_unset=True)))
                updated += 1
        return ImportReport(created=created, updated=updated, errors=errors)


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header; unknown columns become attributes, tags split on ; or |.

    Raises ``ValidationFailedError`` if the file has no header row.
    """
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
            elif key in CSV_FIELDS:
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
