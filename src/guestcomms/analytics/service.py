"""Builds an analytics report: rollups plus the raw tail, grouped, rated, scored, advised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from guestcomms.analytics import figures as fig
from guestcomms.analytics.repository import AnalyticsRepository, LinkClicks, Scope, Window
from guestcomms.analytics.series import GroupBy, group

BASELINE_DAYS = 90  # the organization's usual: the 90 days before the range


@dataclass(frozen=True, slots=True)
class Query:
    """A validated request: the scope, hour-aligned UTC range, grouping and zone."""

    scope: Scope
    label: str  # the scope in words, for the recommendations
    since: datetime
    until: datetime
    group_by: GroupBy
    zone: ZoneInfo
    with_links: bool


@dataclass(frozen=True, slots=True)
class Report:
    """What ``GET /v1/analytics`` answers, before formatting."""

    totals: fig.Counters
    rates: dict[str, fig.Rate]
    series: list[tuple[datetime, fig.Counters]]
    links: list[LinkClicks] | None
    score: float | None
    baseline_rates: dict[str, fig.Rate]
    recommendations: list[str]


async def by_hour(
    repo: AnalyticsRepository, scope: Scope, *, since: datetime, until: datetime, tail: Window
) -> dict[datetime, fig.Counters]:
    """Exact counters by UTC hour: the rollups up to the watermark, the raw ``tail`` past it."""
    hours = await repo.rolled_up(scope, since=since, until=until)
    for hour, counters in (await repo.tail(tail)).items():
        hours.setdefault(hour, fig.Counters()).add(counters)
    return hours


async def report(repo: AnalyticsRepository, query: Query) -> Report:
    """The report of ``query``; the baseline is the whole organization's previous 90 days
    (from the rollups alone: a baseline needs no exactness, and stays cheap)."""
    await repo.plan_each_query()
    position = await repo.position()
    tail = await repo.tail_window(
        query.scope, since=query.since, until=query.until, position=position
    )
    hours = await by_hour(repo, query.scope, since=query.since, until=query.until, tail=tail)
    series = group(
        hours, since=query.since, until=query.until, group_by=query.group_by, zone=query.zone
    )
    totals = fig.total(c for _, c in series)  # the periods cover the range's hours once
    baseline = await repo.rolled_up_total(
        since=query.since - timedelta(days=BASELINE_DAYS), until=query.since
    )
    links = None
    if query.with_links:
        links = await repo.links(tail)
    return Report(
        totals=totals,
        rates=fig.rates(totals),
        series=series,
        links=links,
        score=fig.score(totals, baseline),
        baseline_rates=fig.rates(baseline),
        recommendations=fig.recommend(totals, fig.Context(label=query.label, baseline=baseline)),
    )
