"""Every contact query, always scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select

from guestcomms.contacts.models import PHONE_HASH_CHANNEL, Contact, ContactTag
from guestcomms.db.repository import TenantRepository
from guestcomms.db.upsert import insert_many, planned_for_values, upsert
from guestcomms.domain.ids import new_id
from guestcomms.security.protection import protection_of

_CONTACTS = cast(Table, Contact.__table__)  # Core, for bulk reads and writes
_TAGS = cast(Table, ContactTag.__table__)
IN_CHUNK = 1000  # values per IN (...) list: well under either database's bind-parameter limit
# the columns an import may change on an existing contact
CONTACT_MUTABLE = (
    "phone",
    "phone_hash",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "attributes",
    "tags",
    "webhook_url",
    "push_subscriptions",
    "updated_at",
)


class ContactRepository(TenantRepository[Contact]):
    """Reads and writes the contacts of ``organization_id`` and nobody else's (``get``,
    ``page`` and ``flush`` come from ``TenantRepository``)."""

    model = Contact

    def _email_hashes(self, emails: Iterable[str]) -> dict[str, str]:
        # email (as stored: normalised) -> its keyed hash, the column look-ups use
        protection = protection_of(self._session)
        return {h: e for e in set(emails) if (h := protection.address_hash("email", e))}

    async def by_emails(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Existing contacts keyed by email, among ``emails``."""
        wanted = self._email_hashes(emails)
        if not wanted:
            return {}
        rows = await self._session.scalars(
            select(Contact).where(
                Contact.organization_id == self._org, Contact.email_hash.in_(list(wanted))
            )
        )
        return {c.email: c for c in rows if c.email}

    async def by_phone(self, phone: str) -> Contact | None:
        """The first contact (oldest) with phone number ``phone`` (E.164), if any."""
        digest = protection_of(self._session).address_hash(PHONE_HASH_CHANNEL, phone)
        return await self._session.scalar(
            select(Contact)
            .where(Contact.organization_id == self._org, Contact.phone_hash == digest)
            .order_by(Contact.id)
            .limit(1)
        )

    async def existing_ids(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """The subset of ``ids`` that are contacts of this organization."""
        wanted = list(set(ids))
        found: set[uuid.UUID] = set()
        for start in range(0, len(wanted), 1000):  # stay under bind-parameter limits
            chunk = wanted[start : start + 1000]
            found.update(
                await self._session.scalars(
                    select(Contact.id).where(
                        Contact.organization_id == self._org, Contact.id.in_(chunk)
                    )
                )
            )
        return found

    async def ids_with_all_tags(
        self, tags: Sequence[str], *, chunk: int = 5000
    ) -> AsyncIterator[list[uuid.UUID]]:
        """Stream, in chunks, the ids of contacts that carry every one of ``tags``."""
        stmt = (
            select(ContactTag.contact_id)
            .where(ContactTag.organization_id == self._org, ContactTag.tag.in_(set(tags)))
            .group_by(ContactTag.contact_id)
            .having(func.count() == len(set(tags)))
            .order_by(ContactTag.contact_id)
        )
        result = await self._session.stream_scalars(stmt.execution_options(yield_per=chunk))
        async for part in result.partitions(chunk):
            yield list(part)

    def add(self, contact: Contact) -> None:
        """Stage a new contact for insert (flushed with the transaction)."""
        contact.organization_id = self._org
        self._session.add(contact)

    async def replace_tags(self, contact_id: uuid.UUID, tags: Sequence[str]) -> None:
        """Make the tag rows of ``contact_id`` equal ``tags``."""
        await self._session.execute(
            delete(ContactTag).where(
                ContactTag.organization_id == self._org, ContactTag.contact_id == contact_id
            )
        )
        if tags:
            await self._session.execute(
                insert(ContactTag),
                [
                    {
                        "id": new_id(),
                        "organization_id": self._org,
                        "contact_id": contact_id,
                        "tag": t,
                    }
                    for t in tags
                ],
            )

    async def rows_by_emails(self, emails: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Existing contacts among ``emails`` as column values (no ORM objects: an import
        reads thousands), keyed by email."""
        table = _CONTACTS
        hashes = list(self._email_hashes(emails))
        found: dict[str, dict[str, Any]] = {}
        async with planned_for_values(self._session):
            for start in range(0, len(hashes), IN_CHUNK):
                rows = await self._session.execute(
                    select(table).where(
                        table.c.organization_id == self._org,
                        table.c.email_hash.in_(hashes[start : start + IN_CHUNK]),
                    )
                )
                found.update({row.email: row._asdict() for row in rows})
        return found

    async def upsert_rows(self, rows: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
        """Write contact rows (every column) in one statement: a row whose email exists in
        this organization updates that contact instead. Returns the ids of the rows with an
        email, keyed by email."""
        protection = protection_of(self._session)
        emails: dict[str, str] = {}
        for row in rows:
            row["organization_id"] = self._org
            row["email_hash"] = protection.address_hash("email", row.get("email"))
            row["phone_hash"] = protection.address_hash(PHONE_HASH_CHANNEL, row.get("phone"))
            if row["email_hash"]:
                emails[row["email_hash"]] = row["email"]
        written = await upsert(
            self._session,
            _CONTACTS,
            rows,
            conflict=("organization_id", "email_hash"),
            update=CONTACT_MUTABLE,
            returning=("id", "email_hash"),
        )
        return {emails[row.email_hash]: row.id for row in written if row.email_hash}

    async def replace_tags_of(
        self, tags: Mapping[uuid.UUID, Sequence[str]], *, clear: Sequence[uuid.UUID]
    ) -> None:
        """Delete the tag rows of ``clear``, then insert ``tags`` (contact id -> its tags)."""
        for start in range(0, len(clear), IN_CHUNK):
            await self._session.execute(
                delete(ContactTag).where(
                    ContactTag.organization_id == self._org,
                    ContactTag.contact_id.in_(clear[start : start + IN_CHUNK]),
                )
            )
        rows = [
            {"id": new_id(), "organization_id": self._org, "contact_id": key, "tag": tag}
            for key, values in tags.items()
            for tag in values
        ]
        await insert_many(self._session, _TAGS, rows)

    async def delete(self, contact: Contact) -> None:
        """Delete the contact (its tags and deliveries go with it)."""
        await self._session.delete(contact)
