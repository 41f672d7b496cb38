"""API shapes for the dev outbox."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class OutboxItem(BaseModel):
    """An email the dev outbox kept instead of sending."""

    id: str
    delivery_id: str
    message_id_header: str
    sender: str
    recipient: str
    subject: str
    text: str | None
    html: str | None
    created_at: datetime


class OutboxPage(BaseModel):
    """Newest first."""

    items: list[OutboxItem]
    next_cursor: str | None
