"""API shapes for API keys. The secret is shown once, when the key is made; the stored hash
is never shown."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    """A new key of the caller's organization."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=32, examples=[["messages:send"]])
    rate_limit: int | None = Field(
        default=None, ge=1, le=1_000_000, description="requests per minute; null: the default"
    )


class KeyOut(BaseModel):
    """A key as listed: its visible prefix, never its secret or hash."""

    id: str
    prefix: str
    name: str
    scopes: list[str]
    rate_limit: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyWithSecret(KeyOut):
    """A key just made, with its plaintext (store it: it is not shown again)."""

    key: str


class KeyPage(BaseModel):
    """Oldest first; pass ``next_cursor`` as ``after`` for the next page."""

    items: list[KeyOut]
    next_cursor: str | None
