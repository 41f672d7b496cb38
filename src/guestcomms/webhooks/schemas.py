"""API shapes for webhook endpoints. A secret is shown once, when it is made."""

from __future__ import annotations

from datetime import datetime

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field


class EndpointCreate(BaseModel):
    """A new endpoint."""

    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(examples=["https://vendor.example/hooks/guestcomms"])
    description: str = Field(default="", max_length=200)


class RotateIn(BaseModel):
    """How long the previous secrets stay valid beside the new one."""

    model_config = ConfigDict(extra="forbid")

    overlap_hours: float = Field(default=24.0, ge=0, le=24 * 30)


class EndpointOut(BaseModel):
    """An endpoint; ``active_secrets`` counts the secrets it is signed with now."""

    id: str
    url: str
    description: str
    active_secrets: int
    created_at: datetime


class EndpointWithSecret(EndpointOut):
    """An endpoint with the secret just made (store it: it is not shown again)."""

    secret: str


class EndpointList(BaseModel):
    """Every endpoint."""

    items: list[EndpointOut]
    next_cursor: str | None = None
