"""Render a template for one contact exactly as the worker would, without sending anything.

The preview goes through the worker's own composer (``engine.composer``): the same channel
planning, suppression check, locale variant and formatting locale, sandbox and text
derivation. Only the message is not a row: its variables and channel come from the request.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.channels.base import (
    OutgoingCall,
    OutgoingEmail,
    OutgoingInApp,
    OutgoingItem,
    OutgoingPush,
    OutgoingSms,
    OutgoingWebhook,
)
from guestcomms.config import Settings
from guestcomms.contacts.repository import ContactRepository
from guestcomms.db.queue import ClaimedDelivery
from guestcomms.domain.enums import Channel, Priority
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, new_id
from guestcomms.engine.composer import ComposeError, Composer
from guestcomms.errors import NotFoundError, UnknownContactError, ValidationFailedError
from guestcomms.events.lookup import event_key
from guestcomms.events.repository import EventRepository
from guestcomms.templates.checks import check_declared
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.sandbox import TemplateRenderError
from guestcomms.templates.schemas import PreviewOut, TemplatePreview
from guestcomms.templates.service import channels_covered


def preview_composer(settings: Settings) -> Composer:
    """A composer configured as the worker's (``app.create_worker``), for one preview."""
    return Composer(
        sender=settings.email_from,
        reply_to=settings.email_reply_to,
        message_id_domain=settings.message_id_domain,
    )


async def preview_template(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    template_id: uuid.UUID,
    data: TemplatePreview,
    composer: Composer,
) -> PreviewOut:
    """The rendered content for ``data.contact_id``. Raises ``NotFoundError`` (template or
    version), ``UnknownContactError`` (field ``contact_id``), ``ValidationFailedError``
    (a channel without content, an undeclared variable, an unknown event) and
    ``TemplateRenderError`` when the worker could not send it either (a render failure, no
    address, a suppression)."""
    repo = TemplateRepository(session, organization_id)
    template = await repo.get(template_id)
    if template is None:
        raise NotFoundError("template not found")
    number = data.version or template.latest_version
    version = await repo.version(template.id, number)
    if version is None:
        raise NotFoundError(f"the template has no version {number}", field="version")
    contact_id = await _contact(session, organization_id, data.contact_id)
    channel = data.channel.value if data.channel else template.channel
    if channel not in channels_covered(version):
        raise ValidationFailedError(f"version {number} has no {channel} content", field="channel")
    check_declared(version, data.variables, field="variables")
    event_id = await event_key(EventRepository(session, organization_id), data.event_id)
    delivery_id = new_id()
    delivery = ClaimedDelivery(
        id=delivery_id,
        organization_id=organization_id,
        message_id=new_id(),
        contact_id=contact_id,
        channel=channel,
        priority=int(Priority.NORMAL),
        attempts=0,
        idempotency_key=f"preview_{delivery_id.hex}",
        template_version_id=version.id,
        variables=None,
    )
    result, loaded = await composer.preview(
        session, delivery, variables=data.variables, channels=[channel], event_id=event_id
    )
    if isinstance(result, ComposeError):
        raise TemplateRenderError(str(result))
    localized = loaded.localized[delivery_id]
    out = PreviewOut(
        channel=Channel(result.channel),
        version=number,
        variant=localized.variant,
        locale=localized.locale,
        skipped_channels=result.skipped,
    )
    return out.model_copy(update=_parts(result.item))


async def _contact(session: AsyncSession, organization_id: uuid.UUID, text: str) -> uuid.UUID:
    try:
        key = from_public(IdKind.CONTACT, text)
    except InvalidIdError as e:
        raise UnknownContactError(str(e), field="contact_id") from e
    if not await ContactRepository(session, organization_id).existing_ids([key]):
        raise UnknownContactError(f"unknown contact {text}", field="contact_id")
    return key


def _parts(item: OutgoingItem) -> dict[str, str | None]:
    """The rendered content of an outgoing item, by the preview's field names."""
    if isinstance(item, OutgoingEmail):
        return {"subject": item.subject, "html": item.html, "text": item.text}
    if isinstance(item, OutgoingSms):
        return {"body": item.body}
    if isinstance(item, OutgoingCall):
        return {"say": item.say}
    if isinstance(item, OutgoingPush | OutgoingInApp):
        return {"title": item.title, "body": item.body, "url": item.url}
    if isinstance(item, OutgoingWebhook):
        return {"event_type": item.event_type, "body": str(item.payload.get("body", ""))}
    raise AssertionError(f"no preview for {type(item).__name__}")  # pragma: no cover
