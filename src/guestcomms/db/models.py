"""Imports every model so ``Base.metadata`` knows all tables (Alembic and tests use this)."""

from __future__ import annotations

from guestcomms.contacts.models import Contact, ContactTag
from guestcomms.db.base import Base
from guestcomms.messages.models import Delivery, DeliveryEvent, IdempotencyRecord, Message
from guestcomms.organizations.models import ApiKey, Organization
from guestcomms.outbox.models import OutboxMessage
from guestcomms.templates.models import Template, TemplateVersion

__all__ = [
    "ApiKey",
    "Base",
    "Contact",
    "ContactTag",
    "Delivery",
    "DeliveryEvent",
    "IdempotencyRecord",
    "Message",
    "Organization",
    "OutboxMessage",
    "Template",
    "TemplateVersion",
]
