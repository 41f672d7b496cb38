"""Closed vocabularies shared by every layer: channels, priorities, statuses, event types."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Channel(StrEnum):
    """A way of reaching a contact."""

    EMAIL = "email"
    SMS = "sms"
    VOICE = "voice"
    PUSH = "push"
    WEBHOOK = "webhook"
    INAPP = "inapp"


class Priority(IntEnum):
    """Claim order: lower numbers are claimed first (0 = emergency)."""

    EMERGENCY = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def from_name(cls, name: str) -> Priority:
        """Map ``"emergency"`` and friends to the priority; raise ``KeyError`` if unknown."""
        return cls[name.upper()]

    @property
    def label(self) -> str:
        """The lowercase name used by the API."""
        return self.name.lower()


class DeliveryStatus(StrEnum):
    """Where one delivery (recipient x channel) is in its life."""

    SCHEDULED = "scheduled"  # waiting for a send_at in the future
    QUEUED = "queued"  # due, waiting for a worker
    SENDING = "sending"  # claimed under a lease
    RETRYING = "retrying"  # a transient failure; due again at send_at
    SENT = "sent"  # handed to the provider
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    FAILED = "failed"  # a permanent failure
    DEAD = "dead"  # retries exhausted; an operator may replay it
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # stopped by the compliance gate, with its reason
    HELD = "held"  # its campaign is paused; never claimed until resumed


#: statuses a worker may claim when send_at has come
CLAIMABLE = (DeliveryStatus.QUEUED, DeliveryStatus.SCHEDULED, DeliveryStatus.RETRYING)


class MessageStatus(StrEnum):
    """The summary state of a send request."""

    ACCEPTED = "accepted"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    """Append-only history entries of a delivery."""

    CREATED = "created"  # derived from the delivery row, never stored
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"  # the guest used the delivery's unsubscribe link
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    LEASE_EXPIRED = "lease_expired"
    DEAD = "dead"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    RELEASED = "released"
    REPLAYED = "replayed"
    READ = "read"  # an in-app message was opened
    ACKNOWLEDGED = "acknowledged"  # an in-app message was acknowledged by the guest
    HELD = "held"  # its campaign was paused
    RESUMED = "resumed"  # its campaign was resumed
    DEFERRED = "deferred"  # quiet hours or a frequency cap: back to the queue for later


class GuestRole(StrEnum):
    """A contact's part in an event."""

    GUEST = "guest"
    VENDOR = "vendor"


class Rsvp(StrEnum):
    """A guest's answer to an invitation (``pending`` until they answer)."""

    PENDING = "pending"
    YES = "yes"
    NO = "no"
    MAYBE = "maybe"
