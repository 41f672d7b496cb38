"""Send requests: validate, then write the message and all its deliveries in one transaction.

A crash before the caller commits loses nothing that was acknowledged; after the commit the
work is durable and the workers are woken. Recipients are deduplicated: one delivery per
contact and channel.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guestcomms.contacts.repository import ContactRepository
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus, MessageStatus, Priority
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, new_id
from guestcomms.errors import (
    ConflictError,
    NotFoundError,
    UnknownContactError,
    ValidationFailedError,
)
from guestcomms.events.lookup import event_key
from guestcomms.events.repository import EventRepository
from guestcomms.messages.models import Delivery, Message
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.schemas import MessageCreate
from guestcomms.templates.checks import (
    check_channels,
    check_declared,
    template_for_send,
    unset_variables,
)
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.templates.repository import TemplateRepository

MAX_REPORTED_IDS = 10


@dataclass(slots=True)
class _Recipients:
    """Contact ids in request order (deduplicated), with per-recipient variables."""

    order: list[uuid.UUID] = field(default_factory=list)
    variables: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)

    def add(self, contact_id: uuid.UUID, variables: dict[str, Any] | None = None) -> None:
        if contact_id not in self.variables:
            self.order.append(contact_id)
            self.variables[contact_id] = {}
        if variables:
            self.variables[contact_id].update(variables)


@dataclass(frozen=True, slots=True)
class CreatedMessage:
    """A message just written, with the template version it uses."""

    message: Message
    template: Template
    version: TemplateVersion


class MessageService:
    """Message use cases for one organization."""

    def __init__(
        self,
        *,
        messages: MessageRepository,
        contacts: ContactRepository,
        templates: TemplateRepository,
        events: EventRepository,
        max_recipients: int,
    ) -> None:
        self._messages = messages
        self._events = events
        self._contacts = contacts
        self._templates = templates
        self._max_recipients = max_recipients

    async def create(self, data: MessageCreate) -> CreatedMessage:
        """Validate ``data`` and write the message with one delivery per recipient.

        Raises ``ValidationFailedError`` (naming the field) for an unknown template or
        variable, ``UnknownContactError`` for a contact that is not this organization's.
        """
        template, version = await template_for_send(self._templates, data.template_id)
        event_id = await event_key(self._events, data.event_id)
        recipients = self._explicit_recipients(data)
        await self._check_contacts(recipients.order, data)
        if data.tags:
            async for chunk in self._contacts.ids_with_all_tags(data.tags):
                for contact_id in chunk:
                    recipients.add(contact_id)
        if not recipients.order:
            raise ValidationFailedError(
                "no recipients: give contact_ids, recipients, or tags that match contacts",
                field="contact_ids",
            )
        if len(recipients.order) > self._max_recipients:
            raise ValidationFailedError(
                f"{len(recipients.order)} recipients is over the limit of {self._max_recipients}",
                field="contact_ids",
            )
        _check_variables(version, data, recipients)
        check_channels(version, data.channels)
        return CreatedMessage(
            message=await self._write(data, template, version, recipients, event_id),
            template=template,
            version=version,
        )

    @staticmethod
    def _explicit_recipients(data: MessageCreate) -> _Recipients:
        recipients = _Recipients()
        for index, text in enumerate(data.contact_ids):
            recipients.add(_contact_key(text, field=f"contact_ids[{index}]"))
        for index, recipient in enumerate(data.recipients):
            key = _contact_key(recipient.contact_id, field=f"recipients[{index}].contact_id")
            recipients.add(key, recipient.variables)
        return recipients

    async def _check_contacts(self, ids: Sequence[uuid.UUID], data: MessageCreate) -> None:
        missing = set(ids) - await self._contacts.existing_ids(ids)
        if not missing:
            return
        named = [*data.contact_ids, *(r.contact_id for r in data.recipients)]
        unknown = [c for c in named if from_public(IdKind.CONTACT, c) in missing]
        first = unknown[0]
        field = (
            f"contact_ids[{data.contact_ids.index(first)}]"
            if first in data.contact_ids
            else f"recipients[{[r.contact_id for r in data.recipients].index(first)}].contact_id"
        )
        shown = ", ".join(unknown[:MAX_REPORTED_IDS])
        raise UnknownContactError(f"unknown contact(s): {shown}", field=field)

    async def _write(
        self,
        data: MessageCreate,
        template: Template,
        version: TemplateVersion,
        recipients: _Recipients,
        event_id: uuid.UUID | None,
    ) -> Message:
        now = utc_now()
        send_at = data.send_at or now
        priority = Priority.from_name(data.priority)
        status = DeliveryStatus.SCHEDULED if send_at > now else DeliveryStatus.QUEUED
        channels = [c.value for c in data.channels] if data.channels else [template.channel]
        message = Message(
            id=new_id(),
            template_id=template.id,
            template_version_id=version.id,
            channel=channels[0],
            channels=channels,
            priority=int(priority),
            send_at=send_at,
            status=MessageStatus.ACCEPTED.value,
            variables=data.variables,
            recipient_count=len(recipients.order),
            event_id=event_id,
            tracking=data.tracking,
            created_at=now,
        )
        await self._messages.add_message(message)
        rows = []
        for contact_id in recipients.order:
            delivery_id = new_id()
            rows.append(
                {
                    "id": delivery_id,
                    "message_id": message.id,
                    "contact_id": contact_id,
                    "channel": channels[0],
                    "status": status.value,
                    "priority": int(priority),
                    "send_at": send_at,
                    "attempts": 0,
                    "idempotency_key": f"dlv_{delivery_id.hex}",
                    "template_version_id": version.id,
                    "variables": recipients.variables[contact_id] or None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        await self._messages.insert_deliveries(rows)
        return message

    async def get(self, message_id: uuid.UUID) -> Message:
        """The message; ``NotFoundError`` if it is not this organization's."""
        message = await self._messages.get(message_id)
        if message is None:
            raise NotFoundError("message not found")
        return message

    async def cancel(self, message_id: uuid.UUID) -> tuple[Message, int, int]:
        """Cancel every delivery not yet claimed. Returns (message, cancelled now, deliveries
        that are not cancelled because a worker had already claimed or sent them).

        ``ConflictError`` if nothing was left to cancel on a message not cancelled before;
        cancelling an already cancelled message again is harmless and cancels nothing.
        """
        message = await self._messages.get(message_id, for_update=True)
        if message is None:
            raise NotFoundError("message not found")
        now = utc_now()
        cancelled = await self._messages.cancel_pending(message.id, now=now)
        if cancelled == 0 and message.status != MessageStatus.CANCELLED:
            raise ConflictError("every delivery of this message has already been sent or claimed")
        message.status = MessageStatus.CANCELLED.value
        message.cancelled_at = message.cancelled_at or now
        counts = await self._messages.status_counts(message.id)
        beyond_reach = sum(n for status, n in counts.items() if status != "cancelled")
        return message, cancelled, beyond_reach


def _contact_key(text: str, *, field: str) -> uuid.UUID:
    try:
        return from_public(IdKind.CONTACT, text)
    except InvalidIdError as e:
        raise UnknownContactError(str(e), field=field) from e


def _check_variables(
    version: TemplateVersion, data: MessageCreate, recipients: _Recipients
) -> None:
    check_declared(version, data.variables, field="variables")
    for index, recipient in enumerate(data.recipients):
        check_declared(version, recipient.variables, field=f"recipients[{index}].variables")
    for name in unset_variables(version, data.variables):
        lacking = [c for c in recipients.order if name not in recipients.variables[c]]
        if lacking:
            raise ValidationFailedError(
                f"missing value for template variable {name!r} "
                f"({len(lacking)} recipient(s) have none)",
                field=f"variables.{name}",
            )


async def replay_dead(repo: MessageRepository, delivery_id: uuid.UUID) -> Delivery:
    """Queue a dead delivery again with its original idempotency key (API and CLI).

    ``NotFoundError`` if it is not the repository's organization's; ``ConflictError`` unless
    it is dead. The caller owns the transaction.
    """
    delivery = await repo.delivery(delivery_id, for_update=True)
    if delivery is None:
        raise NotFoundError("delivery not found")
    if delivery.status != DeliveryStatus.DEAD:
        raise ConflictError(f"only a dead delivery can be replayed; this one is {delivery.status}")
    await repo.requeue(delivery, now=utc_now())
    return delivery
