"""Imports every model so ``Base.metadata`` knows all tables (Alembic and tests use this)."""

from __future__ import annotations

from guestcomms.analytics.models import (
    AnalyticsChannelRollup,
    AnalyticsLinkRollup,
    AnalyticsRollup,
    AnalyticsScopeRollup,
    AnalyticsWatermark,
)
from guestcomms.audiences.models import Audience
from guestcomms.audit.models import AuditEntry, AuditHead
from guestcomms.campaigns.models import Campaign
from guestcomms.compliance.models import Consent, PrivacyRequest, Suppression
from guestcomms.contacts.models import Contact, ContactTag
from guestcomms.db.base import Base
from guestcomms.events.models import Event, EventGuest, Household
from guestcomms.inbound.models import InboundEventRecord
from guestcomms.inbox.models import InboxItem
from guestcomms.messages.models import Delivery, DeliveryEvent, IdempotencyRecord, Message
from guestcomms.organizations.models import ApiKey, Organization
from guestcomms.outbox.models import OutboxMessage
from guestcomms.providers.models import ChannelRoute, OperationalEvent, ProviderAccount
from guestcomms.security.models import DataKey
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.tracking.models import TrackingEvent
from guestcomms.webhooks.models import WebhookEndpoint

__all__ = [
    "AnalyticsChannelRollup",
    "AnalyticsLinkRollup",
    "AnalyticsRollup",
    "AnalyticsScopeRollup",
    "AnalyticsWatermark",
    "ApiKey",
    "Audience",
    "AuditEntry",
    "AuditHead",
    "Base",
    "Campaign",
    "ChannelRoute",
    "Consent",
    "Contact",
    "ContactTag",
    "DataKey",
    "Delivery",
    "DeliveryEvent",
    "Event",
    "EventGuest",
    "Household",
    "IdempotencyRecord",
    "InboundEventRecord",
    "InboxItem",
    "Message",
    "OperationalEvent",
    "Organization",
    "OutboxMessage",
    "PrivacyRequest",
    "ProviderAccount",
    "Suppression",
    "Template",
    "TemplateVersion",
    "TrackingEvent",
    "WebhookEndpoint",
]
