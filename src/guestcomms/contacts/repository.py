"""Every contact query, always scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.contacts.models import Contact, ContactTag
from guestcomms.domain.ids import new_id


class ContactRepository:
    """Reads and writes the contacts of ``organization_id`` and nobody else's."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def get(self, contact_id: uuid.UUID) -> Contact | None:
        """The contact, or ``None`` if it does not exist in this organization."""
        return await self._session.scalar(
            select(Contact).where(Contact.id == contact_id, Contact.organization_id == self._org)
        )

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Contact]:
        """Up to ``limit`` contacts in creation order, after the contact ``after``."""
        stmt = select(Contact).where(Contact.organization_id == self._org)
        if after is not None:
            stmt = stmt.where(Contact.id > after)
        return (await self._session.scalars(stmt.order_by(Contact.id).limit(limit))).all()

    async def by_emails(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Existing contacts keyed by email, among ``emails``."""
        wanted = list(set(emails))
        if not wanted:
            return {}
        rows = await self._session.scalars(
            select(Contact).where(Contact.organization_id == self._org, Contact.email.in_(wanted))
        )
        return {c.email: c for c in rows if c.email}

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

    async def flush(self) -> None:
        """Send staged changes to the database (to surface constraint errors early)."""
        await self._session.flush()

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

    async def delete(self, contact: Contact) -> None:
        """Delete the contact (its tags and deliveries go with it)."""
        await self._session.delete(contact)
