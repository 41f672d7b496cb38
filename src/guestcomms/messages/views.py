"""Turning messages and deliveries into their API shapes."""

from __future__ import annotations

from collections.abc import Sequence

from guestcomms.domain.enums import DeliveryStatus, EventType, Priority
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.messages.models import Delivery, DeliveryEvent, Message
from guestcomms.messages.schemas import (
    DeliveryEventOut,
    DeliveryOut,
    MessageAccepted,
    PriorityName,
)


def _priority_name(value: int) -> PriorityName:
    name: PriorityName = Priority(value).label  # type: ignore[assignment]
    return name


def accepted_view(message: Message, *, template_version: int) -> MessageAccepted:
    """The summary of a message."""
    return MessageAccepted(
        id=to_public(IdKind.MESSAGE, message.id),
        status=message.status,
        template_id=to_public(IdKind.TEMPLATE, message.template_id),
        template_version=template_version,
        channel=message.channel,
        channels=list(message.channels or [message.channel]),
        priority=_priority_name(message.priority),
        send_at=message.send_at,
        recipient_count=message.recipient_count,
        created_at=message.created_at,
    )


def delivery_view(delivery: Delivery, events: Sequence[DeliveryEvent]) -> DeliveryOut:
    """A delivery and its history. The ``created`` entry is derived from the row itself (it is
    not stored as an event, which halves the rows a large send writes up front)."""
    history = [DeliveryEventOut(type=EventType.CREATED.value, at=delivery.created_at)]
    history += [DeliveryEventOut(type=e.type, at=e.created_at, detail=e.detail) for e in events]
    return DeliveryOut(
        id=to_public(IdKind.DELIVERY, delivery.id),
        contact_id=to_public(IdKind.CONTACT, delivery.contact_id),
        channel=delivery.channel,
        status=DeliveryStatus(delivery.status).value,
        attempts=delivery.attempts,
        send_at=delivery.send_at,
        provider=delivery.provider,
        provider_message_id=delivery.provider_message_id,
        last_error=delivery.last_error,
        experiment_arm=delivery.experiment_arm,
        send_time_confidence=delivery.send_time_confidence,
        updated_at=delivery.updated_at,
        events=history,
    )
