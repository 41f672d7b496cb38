"""API shapes of the privacy requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class PrivacyRequestOut(BaseModel):
    """A privacy request carried out: what, for whom, by whom, and its counts (never the
    contact's personal data: an erasure keeps only the keyed hashes of the addresses)."""

    id: str
    kind: str
    status: str
    contact_id: str | None
    actor: str
    detail: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None
