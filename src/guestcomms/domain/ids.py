"""Identifiers: time-ordered UUIDv7 keys and their typed public form (``msg_...``).

A public id carries a prefix naming its kind, so a pasted id says what it is and an id
of one kind is never accepted where another is expected.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

import uuid_utils


class IdKind(StrEnum):
    """The prefix of each kind of public id."""

    ORGANIZATION = "org"
    API_KEY = "key"
    CONTACT = "ct"
    TEMPLATE = "tpl"
    TEMPLATE_VERSION = "tv"
    MESSAGE = "msg"
    DELIVERY = "dlv"
    EVENT = "evt"
    CAMPAIGN = "cmp"
    HOUSEHOLD = "hh"
    OUTBOX = "obx"
    PROVIDER = "prv"
    INBOX = "inb"
    WEBHOOK_ENDPOINT = "whe"
    AUDIENCE = "aud"
    AUDIT_ENTRY = "adt"
    CONSENT = "cns"
    SUPPRESSION = "sup"


class InvalidIdError(ValueError):
    """A public id is malformed or of the wrong kind."""


def new_id() -> uuid.UUID:
    """Return a fresh UUIDv7: unique, and ordered by creation time."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def id_floor(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of ``moment``'s millisecond: every id made before it is smaller
    (ids are time-ordered, so an id range is a time range)."""
    millis = int(moment.timestamp() * 1000)
    return uuid.UUID(int=millis << 80)


def id_time(value: uuid.UUID) -> datetime:
    """The time a UUIDv7 was made (to the millisecond)."""
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)


def to_public(kind: IdKind, value: uuid.UUID) -> str:
    """Format a key as the public id of ``kind``."""
    return f"{kind.value}_{value.hex}"


def from_public(kind: IdKind, text: str) -> uuid.UUID:
    """Parse the public id of ``kind``; raise ``InvalidIdError`` if it is not one."""
    prefix, _, rest = text.partition("_")
    if prefix != kind.value or len(rest) != 32:
        raise InvalidIdError(f"not a {kind.value}_ id: {text!r}")
    try:
        return uuid.UUID(hex=rest)
    except ValueError as e:
        raise InvalidIdError(f"not a {kind.value}_ id: {text!r}") from e
