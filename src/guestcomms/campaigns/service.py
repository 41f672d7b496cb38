"""Campaign use cases: create, edit, preview, start, pause, resume, cancel, delete.

The request owns the transaction; nothing here commits. A campaign is fanned out by
``campaigns.fanout`` once started. Edits are allowed until a worker claims the first delivery:
before that, an edit deletes the unclaimed deliveries and the fan-out runs again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from guestcomms.audiences.selection import count, sample
from guestcomms.campaigns.models import Campaign, CampaignStatus
from guestcomms.campaigns.plan import Plan, resolve
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.campaigns.schemas import (
    CampaignControl,
    CampaignCreate,
    CampaignOut,
    CampaignPreview,
    CampaignUpdate,
    SampleGuest,
    ZoneInstants,
)
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import DeliveryStatus, MessageStatus, Priority
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, new_id, to_public
from guestcomms.errors import ConflictError, NotFoundError, ValidationFailedError
from guestcomms.messages.models import Message
from guestcomms.templates.repository import TemplateRepository

PREVIEW_INSTANTS = 5  # send times shown per zone
CANCEL_REASON = "campaign cancelled"

_EDITABLE = frozenset(CampaignStatus) - {CampaignStatus.CANCELLED}
_BODY_KINDS = {
    "template_id": IdKind.TEMPLATE,
    "event_id": IdKind.EVENT,
    "audience_id": IdKind.AUDIENCE,
}


class CampaignService:
    """Campaign use cases for the organization of ``repo``."""

    def __init__(self, repo: CampaignRepository, templates: TemplateRepository) -> None:
        self._repo = repo
        self._templates = templates

    @property
    def organization_id(self) -> uuid.UUID:
        """The organization whose campaigns these are."""
        return self._repo.organization_id

    async def all(self, *, limit: int = 1000) -> list[Campaign]:
        """The organization's campaigns, oldest first (at most ``limit``; the CLI's table)."""
        return list(await self._repo.page(after=None, limit=limit))

    async def get(self, campaign_id: uuid.UUID, *, for_update: bool = False) -> Campaign:
        """The campaign; ``NotFoundError`` if it is not this organization's."""
        campaign = await self._repo.get(campaign_id, for_update=for_update)
        if campaign is None:
            raise NotFoundError("campaign not found")
        return campaign

    async def create(self, data: CampaignCreate) -> Campaign:
        """Validate and store a draft campaign (``ValidationFailedError`` names the field)."""
        campaign = Campaign(id=new_id(), status=CampaignStatus.DRAFT.value, filter="")
        _apply(campaign, data.model_dump())
        plan = await resolve(self._repo, self._templates, campaign)
        _set_key(campaign, plan)
        await self._repo.add(campaign)
        return campaign

    async def update(self, campaign_id: uuid.UUID, data: CampaignUpdate) -> Campaign:
        """Apply the fields given. If the campaign has deliveries and a worker has claimed
        none, they are deleted and the fan-out starts over; ``ConflictError`` once one has
        been claimed, or for a cancelled campaign. A rename alone touches no delivery."""
        campaign = await self.get(campaign_id, for_update=True)
        fields = data.model_dump(exclude_unset=True)
        if set(fields) <= {"name"}:  # a rename changes no delivery: allowed at any time
            _apply(campaign, fields)
            return campaign
        if campaign.status not in _EDITABLE:
            raise ConflictError(f"a {campaign.status} campaign cannot be edited")
        _apply(campaign, fields)
        plan = await resolve(self._repo, self._templates, campaign)
        _set_key(campaign, plan)
        message = await self._repo.message_of(campaign.id)
        if message is not None:
            await self._discard_unclaimed(message, action="edited")
            _reset_message(message, campaign, plan)
            campaign.total = await count(self._repo.session, plan.audience)
            _reset_progress(campaign)
            if campaign.status != CampaignStatus.PAUSED:
                campaign.status = CampaignStatus.RUNNING.value
        return campaign

    async def delete(self, campaign_id: uuid.UUID) -> None:
        """Delete the campaign with its unclaimed deliveries; ``ConflictError`` once a worker
        has claimed one of them (cancel it instead, which keeps the history)."""
        campaign = await self.get(campaign_id, for_update=True)
        message = await self._repo.message_of(campaign.id)
        if message is not None:
            await self._discard_unclaimed(message, action="deleted")
        await self._repo.remove(campaign)

    async def _discard_unclaimed(self, message: Message, *, action: str) -> None:
        # Delete first, then look: a worker that claimed a row meanwhile either kept it from
        # the DELETE (its lock came first) or will find it gone, and a claimed row means the
        # caller's transaction rolls back with the error.
        await self._repo.delete_unclaimed(message.id)
        if await self._repo.any_handed_out(message.id):
            raise ConflictError(
                f"a worker has already claimed a delivery of this campaign: it can no longer "
                f"be {action} (cancel it instead)"
            )

    async def preview(self, campaign_id: uuid.UUID, *, sample_size: int) -> CampaignPreview:
        """The audience's size now, a sample of it, and the first send times in each zone of
        the sample and in the fallback zone (the event's, else the organization's)."""
        campaign = await self.get(campaign_id)
        plan = await resolve(self._repo, self._templates, campaign)
        session = self._repo.session
        guests = await sample(session, plan.audience, limit=sample_size)
        now = utc_now()
        started = campaign.started_at or now
        zones = dict.fromkeys([*(plan.zone_name(g.timezone) for g in guests), plan.zone_name(None)])
        return CampaignPreview(
            count=await count(session, plan.audience),
            sample=[
                SampleGuest(
                    contact_id=to_public(IdKind.CONTACT, g.id),
                    timezone=plan.zone_name(g.timezone),
                )
                for g in guests
            ],
            schedule=[
                ZoneInstants(
                    timezone=zone,
                    instants=plan.send_times(zone, started=started, now=now)[:PREVIEW_INSTANTS],
                )
                for zone in zones
            ],
        )

    async def start(self, campaign_id: uuid.UUID) -> Campaign:
        """Start a draft: count the audience, write the campaign's message, and mark it
        ``running`` for a fan-out runner to pick up. ``ConflictError`` unless a draft."""
        campaign = await self.get(campaign_id, for_update=True)
        if campaign.status == CampaignStatus.PAUSED:
            raise ConflictError("the campaign is paused: resume it")
        if campaign.status != CampaignStatus.DRAFT:
            raise ConflictError(f"the campaign is already {campaign.status}")
        plan = await resolve(self._repo, self._templates, campaign)
        now = utc_now()
        message = Message(id=new_id(), send_at=now, created_at=now, recipient_count=0)
        _reset_message(message, campaign, plan)
        await self._repo.add_message(message)
        campaign.total = await count(self._repo.session, plan.audience)
        campaign.started_at = now
        _reset_progress(campaign)
        campaign.status = CampaignStatus.RUNNING.value
        return campaign

    async def pause(self, campaign_id: uuid.UUID) -> CampaignControl:
        """Stop the fan-out after its current batch and hold every unclaimed delivery."""
        campaign = await self.get(campaign_id, for_update=True)
        if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.COMPLETED):
            raise ConflictError(f"a {campaign.status} campaign cannot be paused")
        campaign.status = CampaignStatus.PAUSED.value
        _drop_lease(campaign)
        return await self._control(campaign, "hold")

    async def resume(self, campaign_id: uuid.UUID) -> CampaignControl:
        """Release the held deliveries (``queued`` if due, else ``scheduled``) and let the
        fan-out go on from where it stopped."""
        campaign = await self.get(campaign_id, for_update=True)
        if campaign.status != CampaignStatus.PAUSED:
            raise ConflictError(f"a {campaign.status} campaign cannot be resumed")
        done = campaign.completed_at is not None
        campaign.status = (CampaignStatus.COMPLETED if done else CampaignStatus.RUNNING).value
        return await self._control(campaign, "release")

    async def cancel(self, campaign_id: uuid.UUID) -> CampaignControl:
        """Stop the fan-out and cancel every unclaimed delivery, in this one transaction:
        after it commits no worker can claim one. Deliveries claimed before may still be
        sent (``not_changed``). Cancelling again is harmless."""
        campaign = await self.get(campaign_id, for_update=True)
        if campaign.status != CampaignStatus.CANCELLED:
            campaign.status = CampaignStatus.CANCELLED.value
            campaign.cancelled_at = utc_now()
            _drop_lease(campaign)
        return await self._control(campaign, "cancel")

    async def _control(self, campaign: Campaign, action: str) -> CampaignControl:
        message = await self._repo.message_of(campaign.id)
        changed = 0
        counts: dict[str, int] = {}
        if message is not None:
            now = utc_now()
            if action == "hold":
                changed = await self._repo.hold(message.id, now=now)
            elif action == "release":
                changed = await self._repo.release(message.id, now=now)
            else:
                changed = await self._repo.cancel_unclaimed(
                    message.id, now=now, reason=CANCEL_REASON
                )
                message.status = MessageStatus.CANCELLED.value
                message.cancelled_at = message.cancelled_at or now
            counts = await self._repo.status_counts(message.id)
        settled = {DeliveryStatus.HELD.value, DeliveryStatus.CANCELLED.value}
        if action == "release":
            settled = {DeliveryStatus.CANCELLED.value}
        return CampaignControl(
            id=to_public(IdKind.CAMPAIGN, campaign.id),
            status=campaign.status,
            changed=changed,
            not_changed=sum(n for status, n in counts.items() if status not in settled),
        )

    async def view(self, campaign: Campaign) -> CampaignOut:
        """The campaign with its progress and its deliveries by status."""
        message = await self._repo.message_of(campaign.id)
        counts = await self._repo.status_counts(message.id) if message else {}
        return campaign_out(campaign, message=message, counts=counts)


def campaign_out(
    campaign: Campaign, *, message: Message | None, counts: dict[str, int]
) -> CampaignOut:
    """The API view of a campaign."""
    if campaign.total:
        progress = min(1.0, campaign.processed / campaign.total)
    else:
        progress = 1.0 if campaign.completed_at else 0.0
    return CampaignOut(
        id=to_public(IdKind.CAMPAIGN, campaign.id),
        name=campaign.name,
        status=campaign.status,
        template_id=to_public(IdKind.TEMPLATE, campaign.template_id),
        event_id=to_public(IdKind.EVENT, campaign.event_id) if campaign.event_id else None,
        audience_id=(
            to_public(IdKind.AUDIENCE, campaign.audience_id) if campaign.audience_id else None
        ),
        filter=campaign.filter,
        dedupe_households=campaign.dedupe_households,
        channels=list(campaign.channels or []),
        priority=Priority(campaign.priority).label,
        variables=dict(campaign.variables or {}),
        schedule=dict(campaign.schedule or {}),
        recurrence=dict(campaign.recurrence) if campaign.recurrence else None,
        experiment=dict(campaign.experiment) if campaign.experiment else None,
        send_time=dict(campaign.send_time) if campaign.send_time else None,
        cancellation_key=campaign.cancellation_key,
        message_id=to_public(IdKind.MESSAGE, message.id) if message else None,
        total=campaign.total,
        processed=campaign.processed,
        created=campaign.created,
        progress=progress,
        counts=counts,
        error=campaign.error,
        started_at=campaign.started_at,
        completed_at=campaign.completed_at,
        cancelled_at=campaign.cancelled_at,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )


def _apply(campaign: Campaign, fields: dict[str, Any]) -> None:
    """Copy request fields onto the campaign, parsing public ids (a bad one is a 422)."""
    for name, value in fields.items():
        setattr(campaign, name, _stored(name, value))


def _stored(name: str, value: Any) -> Any:
    """A request field's value as the campaign stores it."""
    if name in _BODY_KINDS:
        key = _body_key(_BODY_KINDS[name], value, field=name) if value else None
        if name == "template_id" and key is None:
            raise ValidationFailedError("a campaign needs a template", field=name)
        return key
    convert = _CONVERT.get(name)
    return value if convert is None else convert(value)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "priority": lambda v: int(Priority.from_name(v)),
    "channels": lambda v: list(v or []),
    "filter": lambda v: v or "",
    "variables": lambda v: dict(v or {}),
    "schedule": lambda v: dict(v or {}),
    "dedupe_households": bool,
    "experiment": lambda v: dict(v) if v else None,
    "send_time": lambda v: dict(v) if v else None,
}


def _body_key(kind: IdKind, value: str, *, field: str) -> uuid.UUID:
    try:
        return from_public(kind, value)
    except InvalidIdError as e:
        raise ValidationFailedError(str(e), field=field) from e


def _set_key(campaign: Campaign, plan: Plan) -> None:
    """A campaign with a ``while`` condition keys its deliveries per guest (see
    ``domain.schedule.cancellation_key``); this is their common prefix."""
    has_condition = plan.condition is not None
    campaign.cancellation_key = to_public(IdKind.CAMPAIGN, campaign.id) if has_condition else None


def _reset_message(message: Message, campaign: Campaign, plan: Plan) -> None:
    message.campaign_id = campaign.id
    message.event_id = campaign.event_id
    message.template_id = plan.template.id
    message.template_version_id = plan.version.id
    message.channel = plan.channels[0]
    message.channels = list(plan.channels)
    message.priority = campaign.priority
    message.variables = dict(campaign.variables or {})
    message.status = MessageStatus.ACCEPTED.value
    message.recipient_count = 0


def _reset_progress(campaign: Campaign) -> None:
    campaign.cursor = None
    campaign.processed = 0
    campaign.created = 0
    campaign.completed_at = None
    campaign.error = None
    _drop_lease(campaign)


def _drop_lease(campaign: Campaign) -> None:
    # a runner checks its token at every batch: without it, it stops before writing more
    campaign.lease_token = None
    campaign.lease_until = None
