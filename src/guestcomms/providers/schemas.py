"""API shapes for provider accounts and channel routing. Credentials are write-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guestcomms.domain.routing import Strategy

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"


class _Routing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: int = Field(default=0, ge=0, le=1000, description="lower is tried first")
    weight: float = Field(default=1.0, ge=0, le=1000, description="share under `weighted`")
    cost_per_message: float | None = Field(default=None, ge=0)
    rate_per_second: float | None = Field(default=None, gt=0, le=100_000)
    burst: int | None = Field(default=None, ge=1, le=100_000)
    enabled: bool = True


class ProviderCreate(_Routing):
    """A provider account: its kind, settings, secret credentials and place in routing."""

    name: str = Field(pattern=NAME_PATTERN, examples=["sendgrid-main"])
    kind: str = Field(examples=["sendgrid"])
    settings: dict[str, Any] = Field(default_factory=dict, examples=[{"base_url": None}])
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="secrets such as api_key and webhook_secret; stored, never returned",
        examples=[{"api_key": "SG.xxx", "webhook_secret": "MFkwEwYH..."}],
    )


class ProviderUpdate(BaseModel):
    """A partial update; new ``credentials`` replace the old ones and clear a failing status."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] | None = None
    credentials: dict[str, str] | None = None
    priority: int | None = Field(default=None, ge=0, le=1000)
    weight: float | None = Field(default=None, ge=0, le=1000)
    cost_per_message: float | None = Field(default=None, ge=0)
    rate_per_second: float | None = Field(default=None, gt=0, le=100_000)
    burst: int | None = Field(default=None, ge=1, le=100_000)
    enabled: bool | None = None

    @field_validator("priority", "weight", "enabled")
    @classmethod
    def _omitted_not_null(cls, value: object) -> object:
        # these columns always hold a value: leave the field out to keep it, never null it
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class ProviderOut(BaseModel):
    """A provider account as the API shows it: credential names only, never values."""

    id: str
    name: str
    kind: str
    channel: str
    settings: dict[str, Any]
    credential_keys: list[str]
    priority: int
    weight: float
    cost_per_message: float | None
    rate_per_second: float | None
    burst: int | None
    enabled: bool
    status: str
    status_reason: str | None
    created_at: datetime
    updated_at: datetime


class ProviderList(BaseModel):
    """Every provider account of the organization (one page: an organization has few)."""

    items: list[ProviderOut]
    next_cursor: str | None = None


class RouteIn(BaseModel):
    """How a channel's providers are ranked."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy


class RouteOut(BaseModel):
    """A channel's routing strategy."""

    channel: str
    strategy: Strategy
