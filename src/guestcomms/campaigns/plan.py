"""A campaign checked and made ready to fan out: its template version, audience (compiled),
event, schedule and recurrence; and the send times of a guest in a given zone.

The same :func:`resolve` validates a campaign when it is created or edited (every problem a
422 naming the field), when it starts, and when a runner picks it up (the template or the
audience may have changed since).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from guestcomms.audiences.selection import AudienceSpec, CompiledAudience, compile_audience
from guestcomms.campaigns.models import Campaign
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.campaigns.schemas import ExperimentSpec, SendTimeSpec, experiment_spec
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.domain.schedule import (
    Recurrence,
    Schedule,
    ScheduleError,
    ScheduleKind,
    occurrences,
    resolve_zone,
    zone_dependent,
)
from guestcomms.errors import GuestcommsError, ValidationFailedError
from guestcomms.events.models import Event
from guestcomms.templates.checks import (
    check_channels,
    check_declared,
    template_for_send,
    unset_variables,
)
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.templates.repository import TemplateRepository

MAX_OCCURRENCES = 100  # deliveries per guest and campaign, at most (a recurrence is cut there)


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a campaign's experiment, resolved: its template version, the channel its
    deliveries try first, and its weight."""

    name: str
    version: TemplateVersion
    channel: str
    weight: float


@dataclass(slots=True)
class Plan:
    """A valid campaign, resolved. ``audience`` is what the fan-out pages through (the saved
    audience, the inline filter and the ``while`` condition, and-ed); ``condition`` is the
    ``while`` alone, which reminders are rechecked against."""

    template: Template
    version: TemplateVersion
    channels: list[str]
    event: Event | None
    audience: CompiledAudience
    condition: CompiledAudience | None
    schedule: Schedule | None  # None: send when the campaign starts
    recurrence: Recurrence | None
    organization_zone: str
    experiment: ExperimentSpec | None = None
    arms: list[Arm] = field(default_factory=list)  # empty without an experiment
    send_time: SendTimeSpec | None = None
    #: whether guests in different zones get different send times (computed once: the
    #: fan-out asks for every guest)
    zone_dependent: bool = False
    _cache: dict[str | None, list[datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.zone_dependent = self.schedule is not None and zone_dependent(
            self.schedule, self.recurrence
        )

    def zone_name(self, timezone: str | None) -> str:
        """The zone a guest's times are computed in: theirs, else the event's, else the
        organization's, else UTC."""
        event_zone = self.event.timezone if self.event else None
        return resolve_zone(timezone, event_zone, self.organization_zone).key

    def send_times(
        self, timezone: str | None, *, started: datetime, now: datetime
    ) -> list[datetime]:
        """The send times of a guest whose contact zone is ``timezone`` (cached per zone).

        Occurrences already past are collapsed into one send due ``now``: a campaign started
        after its first reminder was due sends that one at once, not every missed one.
        """
        key = timezone if self.zone_dependent else None
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._compute(key, started=started, now=now)
        return cached

    def _compute(self, timezone: str | None, *, started: datetime, now: datetime) -> list[datetime]:
        event_zone = self.event.timezone if self.event else None
        zone = resolve_zone(timezone, event_zone, self.organization_zone)
        schedule = self.schedule or Schedule(kind=ScheduleKind.ABSOLUTE, at=started)
        instants = occurrences(
            schedule,
            self.recurrence,
            zone=zone,
            event_date=self.event.date if self.event else None,
            event_start=self.event.starts_at if self.event else None,
            max_count=MAX_OCCURRENCES,
        )
        future = [t for t in instants if t > now]
        return [now, *future] if len(future) < len(instants) else future


async def resolve(
    repo: CampaignRepository, templates: TemplateRepository, campaign: Campaign
) -> Plan:
    """Check ``campaign`` and resolve what it refers to.

    Raises ``ValidationFailedError`` naming the field: an unknown template, event or audience,
    a variable the template does not declare or one it declares without a value, a channel
    the template has no content for, a filter that does not compile, a schedule or
    recurrence that does not parse, an event-relative schedule without an event.
    """
    template, version = await template_for_send(
        templates, to_public(IdKind.TEMPLATE, campaign.template_id)
    )
    channels = [Channel(c) for c in campaign.channels] if campaign.channels else None
    check_channels(version, channels)
    check_declared(version, campaign.variables, field="variables")
    for name in unset_variables(version, campaign.variables):
        raise ValidationFailedError(
            f"missing value for template variable {name!r}", field=f"variables.{name}"
        )
    event = await _event(repo, campaign)
    schedule, recurrence = _timing(campaign, event)
    audience, condition = await _audiences(repo, campaign, recurrence)
    names = [c.value for c in channels] if channels else [template.channel]
    experiment = experiment_spec(campaign.experiment) if campaign.experiment else None
    send_time = SendTimeSpec.model_validate(campaign.send_time) if campaign.send_time else None
    if send_time is not None and recurrence is not None:
        raise ValidationFailedError(
            "send_time chooses one time per guest: it cannot be combined with a recurrence",
            field="send_time",
        )
    return Plan(
        template=template,
        version=version,
        channels=names,
        event=event,
        audience=audience,
        condition=condition,
        schedule=schedule,
        recurrence=recurrence,
        organization_zone=await repo.organization_timezone(),
        experiment=experiment,
        arms=await _arms(templates, campaign, experiment, version=version, channels=names),
        send_time=send_time,
    )


async def _arms(
    templates: TemplateRepository,
    campaign: Campaign,
    experiment: ExperimentSpec | None,
    *,
    version: TemplateVersion,
    channels: list[str],
) -> list[Arm]:
    """Each variant resolved and checked like the campaign's own template and channels."""
    if experiment is None:
        return []
    arms: list[Arm] = []
    for index, variant in enumerate(experiment.variants):
        where = f"experiment.variants.{index}"
        arm_version = version
        if variant.template_id is not None:
            _, arm_version = await template_for_send(
                templates, variant.template_id, field=f"{where}.template_id"
            )
        channel = variant.channel.value if variant.channel else channels[0]
        if channel not in channels:
            raise ValidationFailedError(
                f"channel {channel!r} is not one of the campaign's channels {channels}",
                field=f"{where}.channel",
            )
        try:
            check_channels(arm_version, [Channel(c) for c in channels])
            check_declared(arm_version, campaign.variables, field="variables")
        except ValidationFailedError as e:
            raise ValidationFailedError(e.message, field=f"{where}.template_id") from e
        for name in unset_variables(arm_version, campaign.variables):
            raise ValidationFailedError(
                f"missing value for template variable {name!r} of variant {variant.name!r}",
                field=f"variables.{name}",
            )
        arms.append(Arm(variant.name, arm_version, channel, variant.weight))
    return arms


async def _event(repo: CampaignRepository, campaign: Campaign) -> Event | None:
    audience = None
    if campaign.audience_id is not None:
        audience = await repo.audience(campaign.audience_id)
        if audience is None:
            raise ValidationFailedError("unknown audience", field="audience_id")
        if campaign.event_id is None:
            campaign.event_id = audience.event_id  # the audience's event is the campaign's
        elif audience.event_id not in (None, campaign.event_id):
            raise ValidationFailedError(
                "the audience belongs to another event", field="audience_id"
            )
    if campaign.event_id is None:
        return None
    event = await repo.event(campaign.event_id)
    if event is None:
        raise ValidationFailedError("unknown event", field="event_id")
    return event


def _timing(campaign: Campaign, event: Event | None) -> tuple[Schedule | None, Recurrence | None]:
    try:
        schedule = Schedule.parse(campaign.schedule) if campaign.schedule else None
        recurrence = Recurrence.parse(campaign.recurrence) if campaign.recurrence else None
    except ScheduleError as e:
        # the message starts with the offending field: "schedule.local_time: ..."
        text = str(e)
        raise ValidationFailedError(text, field=text.split(":", 1)[0]) from e
    if event is None:
        if schedule is not None and schedule.needs_event:
            raise ValidationFailedError(
                "an event-relative schedule needs an event", field="event_id"
            )
        if recurrence is not None and recurrence.needs_event:
            raise ValidationFailedError("until_days_before_event needs an event", field="event_id")
    return schedule, recurrence


async def _audiences(
    repo: CampaignRepository, campaign: Campaign, recurrence: Recurrence | None
) -> tuple[CompiledAudience, CompiledAudience | None]:
    org = repo.organization_id
    saved = await repo.audience(campaign.audience_id) if campaign.audience_id else None
    dedupe = campaign.dedupe_households or bool(saved and saved.dedupe_households)
    condition = None
    text = recurrence.condition if recurrence else None
    if text:
        try:
            condition = compile_audience(AudienceSpec(org, campaign.event_id, text))
        except GuestcommsError as e:
            raise ValidationFailedError(e.message, field="recurrence.while") from e
    if campaign.filter.strip():
        # alone first, so a syntax error's line and column point into the caller's own text
        compile_audience(AudienceSpec(org, campaign.event_id, campaign.filter))
    parts = [saved.filter if saved else "", campaign.filter, text or ""]
    combined = " and ".join(f"({p})" for p in parts if p and p.strip())
    audience = compile_audience(
        AudienceSpec(org, campaign.event_id, combined, dedupe_households=dedupe)
    )
    return audience, condition
