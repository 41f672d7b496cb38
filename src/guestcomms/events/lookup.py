"""Resolving an ``evt_...`` id given in a request: the one check messages, audiences and
template previews share."""

from __future__ import annotations

import uuid

from guestcomms.domain.ids import IdKind, InvalidIdError, from_public
from guestcomms.errors import ValidationFailedError
from guestcomms.events.repository import EventRepository


async def event_key(
    events: EventRepository, public_id: str | None, *, field: str = "event_id"
) -> uuid.UUID | None:
    """The key of ``public_id`` if it is an event of the repository's organization (``None``
    for no event); a malformed or unknown id is a 422 naming ``field``."""
    if public_id is None:
        return None
    try:
        key = from_public(IdKind.EVENT, public_id)
    except InvalidIdError as e:
        raise ValidationFailedError(str(e), field=field) from e
    if await events.get(key) is None:
        raise ValidationFailedError(f"unknown event {public_id}", field=field)
    return key
