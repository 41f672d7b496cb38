"""Parsing of public ids and page parameters, with errors that name the parameter."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from guestcomms.domain.ids import IdKind, InvalidIdError, from_public
from guestcomms.errors import NotFoundError, ValidationFailedError

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


def page_size(requested: int | None, *, default: int, maximum: int) -> int:
    """The page size to use; over ``maximum`` is refused rather than silently cut."""
    if requested is None:
        return default
    if requested > maximum:
        raise ValidationFailedError(f"limit must be at most {maximum}", field="limit")
    return requested
