"""GET /v1/analytics against counts computed from the generator's own bookkeeping."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.analytics import START, History, scope_params, seed_history
from sqlalchemy import func, select

from guestcomms.analytics.models import (
    AnalyticsChannelRollup,
    AnalyticsRollup,
    AnalyticsScopeRollup,
)
from guestcomms.analytics.repository import DIMENSIONS
from guestcomms.analytics.rollup import roll_up
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.ids import IdKind, to_public
from tests.support import create_key, make_settings, running_app

DELIVERIES = 3_000  # every scope at every stage, with the raw path over the whole history
LARGE = 100_000  # the acceptance's history: every scope from the rollups, one over the raw tail
FIGURE_OF = {
    "sent": "sent",
    "delivered": "delivered",
    "bounced": "bounced_hard",
    "soft_bounced": "bounced_soft",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
    "blocked": "blocked",
    "failed": "failed",
    "rejected": "failed",
    "dead": "failed",
}
NEW_YORK = ZoneInfo("America/New_York")


def _matches(history: History, query: dict[str, str], delivery: uuid.UUID) -> bool:
    message, channel, provider = history.deliveries[delivery]
    scope, value = query["scope"], query.get("id")
    return {
        "organization": True,
        "message": value == to_public(IdKind.MESSAGE, message),
        "campaign": history.message_campaign[message] is not None,
        "event": history.message_event[message] is not None,
        "template_version": value
        == to_public(IdKind.TEMPLATE_VERSION, history.message_version[message]),
        "channel": channel == value,
        "provider": provider == value,
    }[scope]


def _expected(
    history: History, query: dict[str, str], since: datetime, until: datetime
) -> tuple[Counter[str], dict[datetime, Counter[str]], Counter[tuple[str, int]]]:
    """Totals, daily New York series (keyed by local date's midnight) and per-link clicks,
    each delivery counted once per figure at its first event of it."""
    firsts: dict[tuple[uuid.UUID, str], datetime] = {}
    totals: Counter[str] = Counter()
    by_hour: dict[datetime, Counter[str]] = {}  # by UTC hour first: one zone change per hour
    links: Counter[tuple[str, int]] = Counter()

    def count(figure: str, moment: datetime) -> None:
        totals[figure] += 1
        hour = moment.replace(minute=0, second=0, microsecond=0)
        by_hour.setdefault(hour, Counter())[figure] += 1

    def first(key: tuple[uuid.UUID, str], moment: datetime) -> None:
        if key not in firsts or moment < firsts[key]:
            firsts[key] = moment

    matching = {d for d in history.deliveries if _matches(history, query, d)}
    for delivery, type_, moment in history.events:
        if delivery in matching:
            first((delivery, FIGURE_OF[type_]), moment)
    for delivery, kind, machine, link, _url, moment in history.tracking:
        if delivery not in matching:
            continue
        name = "opened" if kind == "open" else "clicked"
        inside = since <= moment < until
        if inside:  # every event counts in the totals; machine ones apart
            count(f"{name}_machine" if machine else f"{name}_total", moment)
        if machine:
            continue
        # a delivery counts as opened (clicked) in the hour of its first human open (click)
        # ever: one opened before the range and again inside it is not a new unique open
        first((delivery, name), moment)
        if link is not None:
            first((delivery, f"link{link}"), moment)
            links[("total", link)] += int(inside)
    for (_, figure), moment in firsts.items():
        if not since <= moment < until:
            continue
        if figure.startswith("link"):
            links[("unique", int(figure[4:]))] += 1
        else:
            count(figure, moment)
    by_day: dict[datetime, Counter[str]] = {}
    for hour, counts in by_hour.items():
        local = hour.astimezone(NEW_YORK)
        day = datetime(local.year, local.month, local.day, tzinfo=NEW_YORK)
        by_day.setdefault(day, Counter()).update(counts)
    return totals, by_day, links


async def _check(client: Any, history: History, query: dict[str, str]) -> None:
    response = await client.get("/v1/analytics", params=query)
    assert response.status_code == 200, response.text
    body = response.json()
    since, until = datetime.fromisoformat(query["from"]), datetime.fromisoformat(query["to"])
    totals, by_day, links = _expected(history, query, since, until)
    figures = body["figures"]
    for name, value in figures.items():
        expected = totals["bounced_hard"] + totals["bounced_soft"] if name == "bounced" else 0
        assert value == (expected or totals[name]), (query["scope"], name, value, totals)
    assert body["rates"]["open_rate"]["successes"] == totals["opened"]
    assert body["rates"]["open_rate"]["trials"] == totals["delivered"]
    if query.get("group_by", "day") == "day" and query["tz"] == "America/New_York":
        series = {datetime.fromisoformat(p["start"]): p for p in body["series"]}
        for day, counts in by_day.items():
            point = series[day]
            assert all(point[name] == counts[name] for name in counts), (day, point, counts)
        assert sum(p["sent"] for p in body["series"]) == totals["sent"]
    if query["scope"] in ("message", "campaign"):
        got_unique: Counter[int] = Counter()
        got_total: Counter[int] = Counter()
        for link in body["links"]:
            got_unique[link["link_index"]] += link["clicked"]
            got_total[link["link_index"]] += link["clicked_total"]
        assert got_unique == Counter({i: n for (k, i), n in links.items() if k == "unique"})
        assert got_total == Counter({i: n for (k, i), n in links.items() if k == "total"})


async def _rows_per_key_and_hour(sessions: Any) -> set[int]:
    """How many rollup rows each key has in each hour, in every rollup table (the job
    merges into one)."""
    counts: set[int] = set()
    for table, names in (
        (AnalyticsRollup.__table__, DIMENSIONS),
        (AnalyticsChannelRollup.__table__, ("organization_id", "channel", "provider")),
        (AnalyticsScopeRollup.__table__, ("organization_id", "scope", "scope_id")),
    ):
        keys = [table.c.bucket, *(table.c[name] for name in names)]
        async with sessions() as session:
            found = await session.execute(select(func.count()).select_from(table).group_by(*keys))
            counts |= {row[0] for row in found.all()}
    return counts


def _middle() -> dict[str, str]:
    """A range that starts and ends mid-history, on the hour."""
    return {
        "scope": "channel",
        "id": "email",
        "from": (START + timedelta(days=3, hours=5)).isoformat(),
        "to": (START + timedelta(days=11, hours=7)).isoformat(),
        "tz": "America/New_York",
    }


async def test_analytics_equal_independent_counts_before_and_after_rollup(
    database_url: str,
) -> None:
    """Every figure, the New York daily series across the March DST change, and per-link
    clicks equal the generator's own counts, with no rollup, a partial one (rollups plus
    raw tail) and a full one."""
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        history = await seed_history(sessions, deliveries=DELIVERIES)
        key = await create_key(database_url, "Analytics")
        other = await create_key(database_url, "Someone else")
        queries = scope_params(history)
        async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
            for stage in ("raw", "partial", "full"):
                if stage == "partial":  # mid-hour: the rest of that hour merges in later
                    now = START + timedelta(days=8, hours=3, minutes=20)
                    await roll_up(sessions, now=now, settle_seconds=0)
                if stage == "full":
                    await roll_up(sessions, now=history.end + timedelta(days=1), settle_seconds=0)
                for query in [*queries, _middle()]:
                    await _check(client, history, query)
            assert await _rows_per_key_and_hour(sessions) == {1}
            response = await client.get("/v1/analytics", params=queries[0])
            days = [p["start"] for p in response.json()["series"]]
            assert "2025-03-08T00:00:00-05:00" in days
            assert "2025-03-10T00:00:00-04:00" in days
            assert response.json()["recommendations"], "a 5% bounce rate calls for advice"
            async with api.as_key(other) as stranger:
                foreign = await stranger.get("/v1/analytics", params=queries[1])
                assert foreign.status_code == 404, foreign.text
                own = await stranger.get("/v1/analytics", params=queries[0])
                assert own.json()["figures"]["sent"] == 0
    finally:
        await engine.dispose()


async def test_analytics_of_100_000_deliveries_equal_independent_counts(
    database_url: str,
) -> None:
    """100,000 deliveries with known outcomes: the whole organization over rollups plus a
    raw tail of two thirds of the history, then every scope from the rollups alone."""
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        history = await seed_history(sessions, deliveries=LARGE)
        assert len(history.deliveries) == LARGE
        key = await create_key(database_url, "Analytics")
        queries = scope_params(history)
        async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
            await roll_up(sessions, now=START + timedelta(days=8, hours=3), settle_seconds=0)
            await _check(client, history, queries[0])
            await roll_up(sessions, now=history.end + timedelta(days=1), settle_seconds=0)
            for query in [*queries, _middle()]:
                await _check(client, history, query)
    finally:
        await engine.dispose()
