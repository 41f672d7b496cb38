"""Saved-audience logic: create, update, delete, preview.

Services never commit: the caller (the request) owns the transaction. A filter is checked
when it is saved, against the audience's event (or its absence), so a saved audience always
compiles.
"""

from __future__ import annotations

import uuid

from guestcomms.audiences.models import Audience
from guestcomms.audiences.repository import AudienceRepository
from guestcomms.audiences.schemas import (
    AudienceCreate,
    AudienceOut,
    AudiencePreview,
    AudienceUpdate,
)
from guestcomms.audiences.selection import AudienceSpec, compile_audience
from guestcomms.contacts.service import to_out as contact_out
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, NotFoundError
from guestcomms.events.lookup import event_key
from guestcomms.events.repository import EventRepository


def audience_out(audience: Audience) -> AudienceOut:
    """The API view of an audience."""
    return AudienceOut(
        id=to_public(IdKind.AUDIENCE, audience.id),
        name=audience.name,
        event_id=to_public(IdKind.EVENT, audience.event_id) if audience.event_id else None,
        filter=audience.filter,
        dedupe_households=audience.dedupe_households,
        created_at=audience.created_at,
        updated_at=audience.updated_at,
    )


class AudienceService:
    """Audience use cases for one organization."""

    def __init__(self, repo: AudienceRepository) -> None:
        self._repo = repo

    async def _event(self, public_id: str | None) -> uuid.UUID | None:
        """The key of an event of this organization; 422 naming ``event_id`` otherwise."""
        return await event_key(
            EventRepository(self._repo.session, self._repo.organization_id), public_id
        )

    def _spec(self, *, event_id: uuid.UUID | None, text: str, dedupe: bool) -> AudienceSpec:
        return AudienceSpec(
            organization_id=self._repo.organization_id,
            event_id=event_id,
            filter=text,
            dedupe_households=dedupe,
        )

    async def get(self, audience_id: uuid.UUID) -> Audience:
        """The audience; ``NotFoundError`` if it is not this organization's."""
        audience = await self._repo.get(audience_id)
        if audience is None:
            raise NotFoundError("audience not found")
        return audience

    async def create(self, data: AudienceCreate) -> Audience:
        """Save an audience; 422 if its filter or event is wrong, 409 if the name is taken."""
        event_id = await self._event(data.event_id)
        compile_audience(
            self._spec(event_id=event_id, text=data.filter, dedupe=data.dedupe_households)
        )
        if await self._repo.by_name(data.name):
            raise ConflictError(f"an audience named {data.name!r} exists", field="name")
        audience = Audience(
            name=data.name,
            event_id=event_id,
            filter=data.filter,
            dedupe_households=data.dedupe_households,
        )
        await self._repo.add(audience)
        return audience

    async def update(self, audience_id: uuid.UUID, data: AudienceUpdate) -> Audience:
        """Apply the fields given, then check the result as a whole (a filter that reads
        event-guest fields cannot lose its event)."""
        audience = await self.get(audience_id)
        changes = data.model_dump(exclude_unset=True)
        if "event_id" in changes:
            audience.event_id = await self._event(changes.pop("event_id"))
        for key in ("filter", "dedupe_households", "name"):
            if changes.get(key) is None:
                changes.pop(key, None)  # null for a required field means "leave it"
        name = changes.get("name")
        if name and name != audience.name and await self._repo.by_name(name):
            raise ConflictError(f"an audience named {name!r} exists", field="name")
        for key, value in changes.items():
            setattr(audience, key, value)
        compile_audience(
            self._spec(
                event_id=audience.event_id,
                text=audience.filter,
                dedupe=audience.dedupe_households,
            )
        )
        audience.updated_at = utc_now()
        return audience

    async def delete(self, audience_id: uuid.UUID) -> None:
        """Delete the audience; ``NotFoundError`` if it is not this organization's."""
        await self._repo.delete(await self.get(audience_id))

    async def preview_saved(self, audience_id: uuid.UUID, *, sample: int) -> AudiencePreview:
        """The saved audience's size now and its first ``sample`` members."""
        audience = await self.get(audience_id)
        return await self._preview(
            self._spec(
                event_id=audience.event_id,
                text=audience.filter,
                dedupe=audience.dedupe_households,
            ),
            sample=sample,
        )

    async def preview(
        self, *, text: str, event_id: str | None, dedupe: bool, sample: int
    ) -> AudiencePreview:
        """An unsaved audience's size now and its first ``sample`` members; 422 as on save."""
        spec = self._spec(event_id=await self._event(event_id), text=text, dedupe=dedupe)
        return await self._preview(spec, sample=sample)

    async def _preview(self, spec: AudienceSpec, *, sample: int) -> AudiencePreview:
        audience = compile_audience(spec)
        contacts = await self._repo.sample(audience, limit=sample) if sample else []
        return AudiencePreview(
            count=await self._repo.count(audience), sample=[contact_out(c) for c in contacts]
        )
