"""API shapes for the audit log. An entry is shown without its hashes: they prove the log's
integrity to `guestcomms audit verify`, and mean nothing to a reader."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntryOut(BaseModel):
    """Who did what, when and from where."""

    id: str
    seq: int
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    source: str
    created_at: datetime


class AuditPage(BaseModel):
    """Oldest first; ``next_cursor`` is the ``seq`` to pass as ``after`` for the next page."""

    items: list[AuditEntryOut]
    next_cursor: int | None
