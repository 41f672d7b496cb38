"""``GET /v1/analytics``: figures, rates, series, links, score and advice for one scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query

from guestcomms.analytics import figures as fig
from guestcomms.analytics import service
from guestcomms.analytics.repository import AnalyticsRepository, Scope
from guestcomms.analytics.schemas import AnalyticsOut, Figures, LinkOut, RateOut, SeriesPoint
from guestcomms.analytics.series import GroupBy, ceil_hour, floor_hour
from guestcomms.api.deps import CallerDep, SessionDep
from guestcomms.api.params import path_id
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import NotFoundError, ValidationFailedError

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=400)


class ScopeKind(StrEnum):
    """What the figures are of."""

    MESSAGE = "message"
    CAMPAIGN = "campaign"
    TEMPLATE_VERSION = "template_version"
    CHANNEL = "channel"
    PROVIDER = "provider"
    EVENT = "event"
    ORGANIZATION = "organization"


# scope -> (the rollup dimension, the public id kind; None: the value is a name)
_DIMENSION: dict[ScopeKind, tuple[str, IdKind | None]] = {
    ScopeKind.MESSAGE: ("message_id", IdKind.MESSAGE),
    ScopeKind.CAMPAIGN: ("campaign_id", IdKind.CAMPAIGN),
    ScopeKind.TEMPLATE_VERSION: ("template_version_id", IdKind.TEMPLATE_VERSION),
    ScopeKind.EVENT: ("event_id", IdKind.EVENT),
    ScopeKind.CHANNEL: ("channel", None),
    ScopeKind.PROVIDER: ("provider", None),
}


@router.get("", summary="Analytics of a message, campaign, ... or the whole organization")
async def get_analytics(
    session: SessionDep,
    caller: CallerDep,
    scope: ScopeKind = ScopeKind.ORGANIZATION,
    id: Annotated[
        str | None,
        Query(description="the scope's id (msg_, cmp_, tv_, evt_), channel or provider name"),
    ] = None,
    from_: Annotated[
        datetime | None, Query(alias="from", description="default: 30 days before `to`")
    ] = None,
    to: Annotated[datetime | None, Query(description="default: now")] = None,
    group_by: GroupBy = GroupBy.DAY,
    tz: Annotated[str, Query(description="IANA time zone of the series")] = "UTC",
) -> AnalyticsOut:
    """Counts, rates with 95% intervals, a time series in `tz`, per-link clicks (message and
    campaign scopes), a score against the organization's previous 90 days and
    recommendations. The range is widened to whole UTC hours."""
    caller.require("messages:read")
    repo = AnalyticsRepository(session, caller.organization_id)
    since, until = _range(from_, to)
    zone = _zone(tz)
    key, label = await _scope(repo, scope, id)
    query = service.Query(
        scope=key,
        label=label,
        since=since,
        until=until,
        group_by=group_by,
        zone=zone,
        with_links=scope in (ScopeKind.MESSAGE, ScopeKind.CAMPAIGN),
    )
    found = await service.report(repo, query)
    return AnalyticsOut(
        scope=scope.value,
        id=id,
        start=since,
        end=until,
        group_by=group_by.value,
        tz=tz,
        figures=_figures(found.totals),
        rates={name: _rate(r) for name, r in found.rates.items()},
        series=[
            SeriesPoint(start=start.astimezone(zone), bounced=c.bounced, **c.as_dict())
            for start, c in found.series
        ],
        links=None
        if found.links is None
        else [
            LinkOut(
                message_id=to_public(IdKind.MESSAGE, link.message_id),
                link_index=link.link_index,
                url=link.url,
                clicked=link.clicked,
                clicked_total=link.clicked_total,
            )
            for link in found.links
        ],
        score=found.score,
        baseline_rates={name: _rate(r) for name, r in found.baseline_rates.items()},
        recommendations=found.recommendations,
    )


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    for value, field in ((start, "from"), (end, "to")):
        if value is not None and value.tzinfo is None:
            raise ValidationFailedError("needs a time zone offset (Z or +02:00)", field=field)
    until = ceil_hour((end or datetime.now(UTC)).astimezone(UTC))
    since = floor_hour((start or until - DEFAULT_RANGE).astimezone(UTC))
    if since >= until:
        raise ValidationFailedError("must be before `to`", field="from")
    if until - since > MAX_RANGE:
        raise ValidationFailedError(f"at most {MAX_RANGE.days} days", field="from")
    return since, until


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValidationFailedError(f"unknown time zone {name!r}", field="tz") from e


async def _scope(
    repo: AnalyticsRepository, scope: ScopeKind, value: str | None
) -> tuple[Scope, str]:
    """The repository scope and its label; a row of another organization is a 404."""
    if scope is ScopeKind.ORGANIZATION:
        return Scope(None), "the whole organization"
    if not value:
        raise ValidationFailedError(f"required for scope {scope.value}", field="id")
    dimension, kind = _DIMENSION[scope]
    if kind is None:
        if scope is ScopeKind.CHANNEL and value not in set(Channel):
            raise ValidationFailedError(f"unknown channel {value!r}", field="id")
        return Scope(dimension, value), f"{scope.value} {value}"
    key = path_id(kind, value, what=scope.value.replace("_", " "))
    label = await repo.scope_label(dimension, key)
    if label is None:
        raise NotFoundError(f"{scope.value.replace('_', ' ')} not found")
    return Scope(dimension, key), label


def _figures(c: fig.Counters) -> Figures:
    return Figures(bounced=c.bounced, **c.as_dict())


def _rate(r: fig.Rate) -> RateOut:
    return RateOut(value=r.value, low=r.low, high=r.high, successes=r.successes, trials=r.trials)
