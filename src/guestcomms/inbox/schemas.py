"""API shapes for the in-app inbox."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class InboxItemOut(BaseModel):
    """One in-app message."""

    id: str
    delivery_id: str
    title: str
    body: str
    url: str | None
    requires_ack: bool
    read_at: datetime | None
    acked_at: datetime | None
    created_at: datetime


class InboxPage(BaseModel):
    """A page of a contact's inbox, newest first, with the unread count."""

    items: list[InboxItemOut]
    unread: int
    next_cursor: str | None
