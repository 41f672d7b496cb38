"""AuditEntry (one link of a hash chain) and AuditHead (the tip of each chain, the row an
append locks so two writers cannot fork the chain)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base


class AuditEntry(Base):
    """Who did what, when and from where. Never updated or deleted by the application.

    No foreign key to ``organizations``: deleting a tenant must not erase its history.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_audit_entries_chain_seq"),)

    # the organization's id in hex, or "system" for entries that belong to no tenant
    chain: Mapped[str] = mapped_column(String(32))
    organization_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, 3... within the chain
    actor: Mapped[str] = mapped_column(String(100))  # "key:<prefix>" or "cli:<user>"
    action: Mapped[str] = mapped_column(String(200))  # "POST /v1/contacts", "keys.create"
    target: Mapped[str | None] = mapped_column(String(200), default=None)  # a public id
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # field names, counts
    source: Mapped[str] = mapped_column(String(100))  # client address, or "cli"
    prev_hash: Mapped[str] = mapped_column(String(64))  # "" for the first entry
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest entry of one chain: its ``seq`` and ``hash``."""

    __tablename__ = "audit_heads"

    chain: Mapped[str] = mapped_column(String(32), unique=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64), default="")
