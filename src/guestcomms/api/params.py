"""Parsing of public ids and page parameters, with errors that name the parameter."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Protocol, TypeVar

from fastapi import Query

from guestcomms.config import Settings
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.errors import NotFoundError, ValidationFailedError

MAX_DB_INT = 2**31 - 1  # the largest INTEGER column value (PostgreSQL int4): bounds ids by number
Limit = Annotated[int | None, Query(ge=1, le=10_000, description="page size")]


def path_id(kind: IdKind, value: str, *, what: str) -> uuid.UUID:
    """The key of a path id; a malformed id cannot exist, so it is a 404."""
    try:
        return from_public(kind, value)
    except InvalidIdError as e:
        raise NotFoundError(f"{what} not found") from e


def body_id(kind: IdKind, value: str, *, field: str) -> uuid.UUID:
    """The key of an id given in a body or query; a malformed one is a 422 naming ``field``."""
    try:
        return from_public(kind, value)
    except InvalidIdError as e:
        raise ValidationFailedError(str(e), field=field) from e


def page_size(requested: int | None, *, settings: Settings, field: str = "limit") -> int:
    """The page size to use; over the maximum is refused rather than silently cut."""
    if requested is None:
        return settings.default_page_size
    if requested > settings.max_page_size:
        raise ValidationFailedError(
            f"{field} must be at most {settings.max_page_size}", field=field
        )
    return requested


class _Keyed(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


R = TypeVar("R", bound=_Keyed)


def split_page(rows: Sequence[R], *, size: int, kind: IdKind) -> tuple[Sequence[R], str | None]:
    """The first ``size`` of ``rows`` (fetched as ``size + 1``) and the cursor of the next page,
    or ``None`` when there is no next page."""
    if len(rows) > size:
        return rows[:size], to_public(kind, rows[size - 1].id)
    return rows, None
