"""WebhookEndpoint: a URL of the organization's (or a vendor's) that receives signed POSTs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON


class WebhookEndpoint(Base):
    """An endpoint and its signing secrets: the current one first, then any still inside their
    rotation overlap (``[{"secret": "whsec_...", "expires_at": iso | None}]``)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        UniqueConstraint("organization_id", "url", name="uq_webhook_endpoints_org_url"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    secrets: Mapped[list[dict[str, Any]]] = mapped_column(
        EncryptedJSON("webhook_endpoints.secrets"), default=list
    )
