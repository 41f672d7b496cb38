"""DataKey: one wrapped data key of the field encryption (``security.encryption``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.db.base import Base


class DataKey(Base):
    """A data key, wrapped under the master key. Exactly one is ``active`` (it encrypts new
    values); ``retired`` keys still decrypt what they encrypted, and are never deleted, so a
    backup taken before a rotation stays readable."""

    __tablename__ = "data_keys"

    key_id: Mapped[str] = mapped_column(String(16), unique=True)  # "k1", "k2", ...
    wrapped: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10))  # active | retired
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
