"""``python -m bench.analytics`` (and the ``make bench`` runs ``analytics-sqlite``,
``analytics-postgres``): analytics query latency over a generated history.

Seeds deliveries with known outcomes (``seed_history``, also used by
tests/integration/test_analytics.py) until about ``--events`` delivery events exist (20 days
of six messages, with opens and clicks besides), runs the rollup job, then times
``GET /v1/analytics`` over the whole history for every scope in turn (through the app, with
its key check), and prints p50/p99 per database. PostgreSQL is skipped when unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import asyncpg
from rich.table import Table
from sqlalchemy import Table as SqlTable
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.lean_http import KeepAlive
from bench.procs import BenchError, child_env, free_port, http_ready, start
from bench.procs import venv_script as script
from bench.report import make_console
from bench.stores import DEFAULT_ADMIN_DSN, postgres_reachable, postgres_store
from guestcomms.analytics.models import AnalyticsRollup
from guestcomms.analytics.repository import AnalyticsRepository
from guestcomms.analytics.rollup import INTERVAL_SECONDS, roll_up
from guestcomms.analytics.series import ceil_hour
from guestcomms.campaigns.models import Campaign
from guestcomms.contacts.models import Contact
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.db.migrate import upgrade
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.events.models import Event
from guestcomms.messages.models import Delivery, DeliveryEvent, Message
from guestcomms.organizations.models import Organization
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.tracking.models import TrackingEvent

START = datetime(2025, 3, 1, tzinfo=UTC)  # spans the US change to summer time (March 9)
CHANNELS = ("email", "email", "email", "sms")
PROVIDERS = {"email": ("sendgrid", "ses"), "sms": ("twilio",)}
URLS = ("https://example.com/rsvp", "https://example.com/venue", "https://example.com/gifts")
INSERT_CHUNK = 5000
DAYS = 20  # of sending


def uuid7_at(moment: datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 made at ``moment`` (its millisecond), random in its other bits."""
    millis = int(moment.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    return uuid.UUID(int=value | (0b10 << 62) | rng.getrandbits(62))


@dataclass
class History:
    """What was generated: the organization, its scopes, and every event written."""

    organization_id: uuid.UUID
    messages: list[uuid.UUID]
    message_campaign: dict[uuid.UUID, uuid.UUID | None]
    message_event: dict[uuid.UUID, uuid.UUID | None]
    message_version: dict[uuid.UUID, uuid.UUID]
    campaign_id: uuid.UUID
    event_id: uuid.UUID
    versions: list[uuid.UUID]
    end: datetime
    # per delivery: message, channel, provider
    deliveries: dict[uuid.UUID, tuple[uuid.UUID, str, str | None]] = field(default_factory=dict)
    # (delivery, type, time) of delivery events; (delivery, kind, machine, link, url, time)
    events: list[tuple[uuid.UUID, str, datetime]] = field(default_factory=list)
    tracking: list[tuple[uuid.UUID, str, bool, int | None, str | None, datetime]] = field(
        default_factory=list
    )


async def _scaffold(session: AsyncSession, *, messages: int) -> dict[str, Any]:
    org = Organization(name="Analytics")
    session.add(org)
    await session.flush()
    template = Template(organization_id=org.id, name="invite", channel="email", latest_version=2)
    session.add(template)
    await session.flush()
    versions = [
        TemplateVersion(
            organization_id=org.id,
            template_id=template.id,
            version=n,
            subject="Hello",
            text="Hi",
            variables=[],
        )
        for n in (1, 2)
    ]
    event = Event(
        organization_id=org.id,
        name="Wedding",
        date=date(2025, 6, 1),
        timezone="UTC",
        starts_at=START,
    )
    contact = Contact(organization_id=org.id, email="guest@example.com", attributes={}, tags=[])
    session.add_all([*versions, event, contact])
    await session.flush()
    campaign = Campaign(
        organization_id=org.id,
        name="Save the date",
        event_id=event.id,
        template_id=template.id,
        priority=2,
        status="completed",
    )
    session.add(campaign)
    await session.flush()
    rows = []
    for n in range(messages):
        in_campaign = n % 2 == 0
        rows.append(
            Message(
                organization_id=org.id,
                template_id=template.id,
                template_version_id=versions[n % 2].id,
                channel="email",
                priority=2,
                send_at=START,
                status="accepted",
                campaign_id=campaign.id if in_campaign else None,
                event_id=event.id if in_campaign or n % 3 == 0 else None,
            )
        )
    session.add_all(rows)
    await session.flush()
    return {
        "org": org,
        "versions": versions,
        "event": event,
        "campaign": campaign,
        "contact": contact,
        "messages": rows,
    }


def _outcomes(
    history: History, delivery: uuid.UUID, channel: str, sent_at: datetime, rng: random.Random
) -> None:
    """One delivery's events, known by construction."""

    def at(minutes: float) -> datetime:
        return sent_at + timedelta(seconds=1 + minutes * 60)

    add = history.events.append
    roll = rng.random()
    if roll < 0.03:
        add((delivery, "blocked", sent_at))
        return
    if roll < 0.05:
        add((delivery, "failed" if roll < 0.04 else "dead", sent_at))
        return
    add((delivery, "sent", sent_at))
    if rng.random() < 0.1:  # the provider's own "accepted": the same delivery, once
        add((delivery, "sent", at(1)))
    roll = rng.random()
    if roll < 0.04:
        add((delivery, "bounced", at(2)))
        return
    if roll < 0.06:
        add((delivery, "soft_bounced", at(2)))
        return
    if roll < 0.07:
        add((delivery, "rejected", at(2)))
        return
    add((delivery, "delivered", at(rng.uniform(1, 90))))
    if rng.random() < 0.01:
        add((delivery, "complained", at(rng.uniform(100, 3000))))
    if rng.random() < 0.015:
        add((delivery, "unsubscribed", at(rng.uniform(100, 3000))))
    if channel == "email":
        _tracking(history, delivery, at, rng)


def _tracking(
    history: History, delivery: uuid.UUID, at: Callable[[float], datetime], rng: random.Random
) -> None:
    """An email's opens and clicks, some by machines."""
    if rng.random() < 0.15:  # a privacy proxy fetches the pixel at once
        history.tracking.append((delivery, "open", True, None, None, at(91)))
    if rng.random() < 0.4:
        for _ in range(rng.randint(1, 3)):
            history.tracking.append(
                (delivery, "open", False, None, None, at(rng.uniform(92, 4000)))
            )
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 2)):
                link = rng.randrange(len(URLS))
                history.tracking.append(
                    (delivery, "click", False, link, URLS[link], at(rng.uniform(4001, 6000)))
                )
    if rng.random() < 0.02:  # a link scanner
        history.tracking.append((delivery, "click", True, 0, URLS[0], at(92)))


async def seed_history(
    sessions: async_sessionmaker[AsyncSession],
    *,
    deliveries: int,
    days: int = DAYS,
    messages: int = 6,
    seed: int = 7,
) -> History:
    """Write an organization with ``deliveries`` deliveries over ``days`` days from START,
    their events and tracking events (ids made at each event's time), in bulk."""
    rng = random.Random(seed)
    async with sessions() as session, session.begin():
        made = await _scaffold(session, messages=messages)
    msgs: list[Message] = made["messages"]
    history = History(
        organization_id=made["org"].id,
        messages=[m.id for m in msgs],
        message_campaign={m.id: m.campaign_id for m in msgs},
        message_event={m.id: m.event_id for m in msgs},
        message_version={m.id: m.template_version_id for m in msgs},
        campaign_id=made["campaign"].id,
        event_id=made["event"].id,
        versions=[v.id for v in made["versions"]],
        end=START + timedelta(days=days + 4),
    )
    span = days * 86400
    rows = []
    for _ in range(deliveries):
        message = msgs[rng.randrange(len(msgs))]
        channel = rng.choice(CHANNELS)
        sent_at = START + timedelta(seconds=rng.uniform(0, span))
        delivery_id = uuid7_at(sent_at - timedelta(seconds=1), rng)
        blocked_or_failed = len(history.events)
        _outcomes(history, delivery_id, channel, sent_at, rng)
        outcome = history.events[blocked_or_failed][1]
        provider = None if outcome == "blocked" else rng.choice(PROVIDERS[channel])
        history.deliveries[delivery_id] = (message.id, channel, provider)
        rows.append(
            {
                "id": delivery_id,
                "organization_id": history.organization_id,
                "message_id": message.id,
                "contact_id": made["contact"].id,
                "channel": channel,
                "status": "delivered",
                "priority": 2,
                "send_at": sent_at,
                "attempts": 1,
                "provider": provider,
                "idempotency_key": f"dlv_{delivery_id.hex}",
                "template_version_id": message.template_version_id,
                "created_at": sent_at,
                "updated_at": sent_at,
            }
        )
    event_rows = [
        {
            "id": uuid7_at(moment, rng),
            "organization_id": history.organization_id,
            "delivery_id": delivery_id,
            "type": type_,
            "detail": None,
            "created_at": moment,
        }
        for delivery_id, type_, moment in history.events
    ]
    tracking_rows = [
        {
            "id": uuid7_at(moment, rng),
            "organization_id": history.organization_id,
            "delivery_id": delivery_id,
            "kind": kind,
            "machine": machine,
            "link_index": link,
            "url": url,
            "created_at": moment,
        }
        for delivery_id, kind, machine, link, url, moment in history.tracking
    ]
    loads: list[tuple[SqlTable, Sequence[dict[str, Any]]]] = [
        (cast(SqlTable, Delivery.__table__), rows),
        (cast(SqlTable, DeliveryEvent.__table__), event_rows),
        (cast(SqlTable, TrackingEvent.__table__), tracking_rows),
    ]
    for table, values in loads:
        for first in range(0, len(values), INSERT_CHUNK):
            async with sessions() as session, session.begin():
                conn = await session.connection()
                await conn.execute(insert(table), values[first : first + INSERT_CHUNK])
    async with sessions() as session, session.begin():
        # the planner's statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite)
        # would keep them after a bulk load: without them a plan may loop over every row
        await session.execute(text("ANALYZE"))
    return history


def scope_params(history: History, *, until: datetime | None = None) -> list[dict[str, str]]:
    """One query per scope from the history's start to ``until`` (default: its end), daily
    in New York."""
    end = until or history.end
    base = {"from": START.isoformat(), "to": end.isoformat(), "tz": "America/New_York"}
    return [
        {**base, "scope": "organization"},
        {**base, "scope": "message", "id": to_public(IdKind.MESSAGE, history.messages[0])},
        {**base, "scope": "campaign", "id": to_public(IdKind.CAMPAIGN, history.campaign_id)},
        {**base, "scope": "event", "id": to_public(IdKind.EVENT, history.event_id)},
        {
            **base,
            "scope": "template_version",
            "id": to_public(IdKind.TEMPLATE_VERSION, history.versions[0]),
        },
        {**base, "scope": "channel", "id": "email"},
        {**base, "scope": "provider", "id": "sendgrid", "group_by": "hour"},
        {**base, "scope": "organization", "group_by": "week", "tz": "Asia/Kolkata"},
    ]


@dataclass
class Result:
    """One database's figures (``error`` set when the run could not happen)."""

    store: str
    deliveries: int = 0
    events: int = 0
    tracking: int = 0
    rollup_rows: int = 0
    tail_events: int = 0  # past the watermark, read raw by every query
    seed_s: float = 0.0
    rollup_s: float = 0.0
    timings: dict[str, list[float]] = field(default_factory=dict)  # seconds, by scope
    error: str | None = None

    @property
    def every(self) -> list[float]:
        """Every query's time, sorted."""
        return sorted(t for values in self.timings.values() for t in values)

    def p(self, fraction: float, values: list[float] | None = None) -> float:
        """The ``fraction`` percentile in ms (nearest rank)."""
        ordered = sorted(values) if values is not None else self.every
        return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)] * 1000


async def measure(store: str, url: str, *, events: int, queries: int) -> Result:
    """Seed about ``events`` delivery events, roll up, and time ``queries`` analytics
    queries (the scopes in turn, after one warm-up round) through the app on ``url``."""
    from guestcomms.organizations.repository import OrganizationRepository  # noqa: PLC0415
    from guestcomms.organizations.service import issue_key  # noqa: PLC0415

    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    began = time.perf_counter()
    history = await seed_history(sessions, deliveries=events * 10 // 21)
    result = Result(
        store,
        deliveries=len(history.deliveries),
        events=len(history.events),
        tracking=len(history.tracking),
        seed_s=time.perf_counter() - began,
    )
    # the query is made in the last minute of sending, the job's last pass an interval
    # before, as in production: the events since (a minute or two) are read raw
    now = START + timedelta(days=DAYS) - timedelta(minutes=1)
    began = time.perf_counter()
    await roll_up(sessions, now=now - timedelta(seconds=INTERVAL_SECONDS))
    result.rollup_s = time.perf_counter() - began
    async with sessions() as session, session.begin():
        issued = await issue_key(OrganizationRepository(session), organization_name="Analytics")
        result.rollup_rows = (
            await session.scalar(select(func.count()).select_from(AnalyticsRollup))
        ) or 0
        watermark = await AnalyticsRepository(session, history.organization_id).position()
        for table in (DeliveryEvent, TrackingEvent):
            result.tail_events += (
                await session.scalar(
                    select(func.count()).where(
                        table.id >= watermark, table.created_at < ceil_hour(now)
                    )
                )
            ) or 0
    await engine.dispose()
    result.timings = await _time_queries(
        url, scope_params(history, until=now), key=issued.plaintext, queries=queries
    )
    return result


async def _time_queries(
    url: str, params: list[dict[str, str]], *, key: str, queries: int
) -> dict[str, list[float]]:
    """Serve ``url`` with ``guestcomms api`` and time ``queries`` queries from one keep-alive
    connection, the scopes in turn after one warm-up round (as a dashboard asks them)."""
    env = child_env({"GUESTCOMMS_DATABASE_URL": url})
    env["GUESTCOMMS_LOG_LEVEL"] = "WARNING"
    env["GUESTCOMMS_API_RATE_LIMIT"] = "1000000/minute"
    port = free_port()
    with tempfile.TemporaryDirectory() as logs:
        api = await start(
            "analytics-api",
            [script("guestcomms"), "api", "--port", str(port)],
            env=env,
            log_dir=Path(logs),
        )
        try:
            await http_ready(f"http://127.0.0.1:{port}", children=[api], within=60)
            connection = await KeepAlive.open("127.0.0.1", port)
            try:
                return await _timed(connection, params, key=key, queries=queries)
            finally:
                await connection.close()
        finally:
            await api.stop()


async def _timed(
    connection: KeepAlive, params: list[dict[str, str]], *, key: str, queries: int
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = defaultdict(list)
    headers = {"Authorization": f"Bearer {key}"}
    for n in range(len(params) + queries):
        query = params[n % len(params)]
        began = time.perf_counter()
        status, body = await connection.get(f"/v1/analytics?{urlencode(query)}", headers=headers)
        elapsed = time.perf_counter() - began
        if status != 200:
            raise BenchError(f"GET /v1/analytics: {status} {body[:300]!r}")
        if n >= len(params):  # the first round warms the connection pool and caches
            timings[_label(query)].append(elapsed)
    return dict(timings)


def _label(query: dict[str, str]) -> str:
    return f"{query['scope']} by {query.get('group_by', 'day')}"


RUNS = ("analytics-sqlite", "analytics-postgres")


async def run_all(
    names: Sequence[str],
    *,
    admin_dsn: str = DEFAULT_ADMIN_DSN,
    events: int = 1_000_000,
    queries: int = 400,
) -> list[Result]:
    """Each run asked for, each on a fresh database; a run that cannot happen (PostgreSQL
    unreachable) comes back with its ``error``."""
    results: list[Result] = []
    for run in names:
        store = run.removeprefix("analytics-")
        try:
            if store == "sqlite":
                with tempfile.TemporaryDirectory() as folder:
                    url = f"sqlite+aiosqlite:///{Path(folder) / 'analytics.db'}"
                    results.append(await measure(store, url, events=events, queries=queries))
                continue
            reason = await postgres_reachable(admin_dsn)
            if reason is not None:
                results.append(Result(store, error=f"skipped: {reason}"))
                continue
            async with postgres_store(admin_dsn) as fresh:
                results.append(await measure(store, fresh.url, events=events, queries=queries))
        except (OSError, asyncpg.PostgresError, BenchError) as e:
            results.append(Result(store, error=str(e)))
    return results


def table(results: Sequence[Result]) -> Table:
    """The figures as a table: all scopes together, then the slowest scope's p50."""
    out = Table(title="analytics: GET /v1/analytics over a generated history, after the rollup")
    columns = ("store", "delivery ev.", "tracking ev.", "rollup rows", "raw tail", "queries")
    for column in (*columns, "p50 ms", "p99 ms", "slowest scope: p50 ms"):
        out.add_column(column, justify="right")
    for r in results:
        if r.error is not None:
            out.add_row(r.store, f"failed: {r.error}", *[""] * 7)
            continue
        slowest = max(r.timings, key=lambda k: statistics.median(r.timings[k]))
        out.add_row(
            r.store,
            f"{r.events:,}",
            f"{r.tracking:,}",
            f"{r.rollup_rows:,}",
            f"{r.tail_events:,}",
            f"{len(r.every):,}",
            f"{r.p(0.5):.1f}",
            f"{r.p(0.99):.1f}",
            f"{slowest}: {r.p(0.5, r.timings[slowest]):.1f}",
        )
    return out


def main() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="delivery events")
    parser.add_argument("--queries", type=int, default=400, help="timed, per database")
    parser.add_argument("--only", default=",".join(RUNS), help="runs, comma-separated")
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_DSN, help="admin DSN")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    for name in names:
        if name not in RUNS:
            parser.error(f"unknown run {name!r}; choose from {', '.join(RUNS)}")
    results = asyncio.run(
        run_all(names, admin_dsn=args.postgres, events=args.events, queries=args.queries)
    )
    make_console().print(table(results))


if __name__ == "__main__":
    main()
