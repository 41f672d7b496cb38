"""``python -m bench.fanout``: the campaign fan-out rate (deliveries written per second) and
memory, for a 50,000-guest campaign with a local-time schedule, on SQLite or PostgreSQL.

    python -m bench.fanout --store sqlite [--guests 50000] [--batch 5000]
    python -m bench.fanout --store postgres [--postgres DSN]
    python -m bench.fanout --store sqlite --json      # one RESULT {...} line (bench/__main__)

One process, not timed: a fresh database, an organization, a template and ``--guests``
contacts spread over eight zones and none (written straight through the driver), then
``ANALYZE``. Timed: the real ``CampaignService.start`` (counts the audience) and the real
fan-out (``campaigns.fanout.fan_out``: one transaction per batch, audience page + bulk insert
+ cursor), with the audience read and the insert timed apart. The process's RSS is sampled
after every batch: the growth from before the fan-out to its peak, and from the first batch
to the last (flat = the audience is streamed, not loaded). Then, for comparison, the same
rows inserted with no audience to read ("insert only"), and again with the secondary indexes
and foreign keys of ``deliveries`` dropped ("bare table"): the ceiling of the insert path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import psutil
import uuid_utils
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.report import FAN_OUT_TARGET, machine, make_console
from bench.stores import DEFAULT_ADMIN_DSN, postgres_store
from guestcomms.campaigns import fanout
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.campaigns.schemas import CampaignCreate
from guestcomms.campaigns.service import CampaignService
from guestcomms.db import bulk
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.db.migrate import upgrade_async
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.messages.models import Message
from guestcomms.templates.repository import TemplateRepository

ZONES = (
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    None,  # falls back to the organization's zone
)
T = TypeVar("T")


@dataclass
class FanoutResult:
    """What one fan-out run measured."""

    store: str
    guests: int
    batch: int
    deliveries: int = 0
    seconds: float = 0.0
    start_seconds: float = 0.0  # CampaignService.start: the audience count
    page_seconds: float = 0.0  # reading the audience, all batches
    insert_seconds: float = 0.0  # bulk.insert_deliveries, all batches
    rss_before_mb: float = 0.0
    rss_peak_growth_mb: float = 0.0
    rss_first_to_last_mb: float = 0.0
    insert_only_rate: float = 0.0
    bare_table_rate: float = 0.0
    rss_by_batch_mb: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Deliveries written per second by the fan-out."""
        return self.deliveries / self.seconds if self.seconds else 0.0


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def _timed(
    func: Callable[..., Awaitable[T]], into: dict[str, float], key: str
) -> Callable[..., Awaitable[T]]:
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await func(*args, **kwargs)
        finally:
            into[key] = into.get(key, 0.0) + time.perf_counter() - started

    return wrapper


def _time_calls(
    module: ModuleType, name: str, into: dict[str, float], *, key: str | None = None
) -> None:
    """Replace ``module.name`` by a wrapper adding each call's time to ``into[key or name]``."""
    setattr(module, name, _timed(getattr(module, name), into, key or name))


@contextlib.asynccontextmanager
async def _database(store: str, admin_dsn: str) -> AsyncIterator[str]:
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="gc-fanout-") as directory:
            yield f"sqlite+aiosqlite:///{Path(directory) / 'fanout.db'}"
    else:
        async with postgres_store(admin_dsn) as pg:
            yield pg.url


async def _seed(
    sessions: async_sessionmaker[AsyncSession], *, guests: int, postgres: bool
) -> tuple[uuid.UUID, str]:
    """An organization, a template and ``guests`` contacts; returns (org id, template id)."""
    org, template, version = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await conn.execute(
            text(
                "INSERT INTO organizations (id, name, timezone, locale, created_at) "
                "VALUES (:id, 'Bench', 'Europe/Lisbon', 'en', :now)"
            ),
            {"id": org.hex if not postgres else org, "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO templates (id, organization_id, name, channel, latest_version, "
                "created_at) VALUES (:id, :org, 'save-the-date', 'email', 1, :now)"
            ),
            {"id": _key(template, postgres), "org": _key(org, postgres), "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO template_versions (id, organization_id, template_id, version, "
                "subject, text, variables, channel_content, locales, created_at) VALUES "
                "(:id, :org, :tpl, 1, 'Save the date, {{ first_name }}', 'Hi {{ first_name }}', "
                "'[]', '{}', '{}', :now)"
            ),
            {
                "id": _key(version, postgres),
                "org": _key(org, postgres),
                "tpl": _key(template, postgres),
                "now": now,
            },
        )
    rows = [
        (uuid_utils.uuid7(), f"guest{i}@example.com", f"Guest{i}", ZONES[i % len(ZONES)])
        for i in range(guests)
    ]
    async with sessions() as session, session.begin():
        if postgres:
            _, raw = await bulk._raw_asyncpg(session)
            await raw.copy_records_to_table(
                "contacts",
                records=[
                    (uuid.UUID(bytes=r[0].bytes), org, r[1], r[2], r[3], "{}", "[]", "[]", now, now)
                    for r in rows
                ],
                columns=[
                    "id", "organization_id", "email", "first_name", "timezone",
                    "attributes", "tags", "push_subscriptions", "created_at", "updated_at",
                ],
            )  # fmt: skip
        else:
            stamp = now.replace(tzinfo=None).isoformat(sep=" ")
            conn = await session.connection()
            await conn.exec_driver_sql(
                "INSERT INTO contacts (id, organization_id, email, first_name, timezone, "
                "attributes, tags, push_subscriptions, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, '{}', '[]', '[]', ?, ?)",
                [(r[0].hex, org.hex, r[1], r[2], r[3], stamp, stamp) for r in rows],
            )
    async with sessions() as session:
        await (await session.connection()).exec_driver_sql("ANALYZE")
    return org, to_public(IdKind.TEMPLATE, template)


def _key(value: uuid.UUID, postgres: bool) -> Any:
    return value if postgres else value.hex


async def _start(
    sessions: async_sessionmaker[AsyncSession], org: uuid.UUID, template: str
) -> uuid.UUID:
    async with sessions() as session, session.begin():
        service = CampaignService(
            CampaignRepository(session, org), TemplateRepository(session, org)
        )
        campaign = await service.create(
            CampaignCreate(
                name="Save the date",
                template_id=template,
                schedule={"date": "2031-06-01", "local_time": "10:00"},
            )
        )
        await service.start(campaign.id)
        return campaign.id


async def _insert_only(
    sessions: async_sessionmaker[AsyncSession], message: Message, *, rows: int, batch: int
) -> float:
    """Deliveries per second through the same bulk insert, with no audience to read (for
    ``batch`` existing contacts, again and again: the foreign key needs real ones)."""
    slots = [bulk.Slot(datetime(2031, 6, 1, 9, tzinfo=UTC), DeliveryStatus.SCHEDULED)]
    async with sessions() as session:
        found = await session.execute(
            text("SELECT id FROM contacts ORDER BY id LIMIT :n"), {"n": batch}
        )
        contacts = [c if isinstance(c, uuid.UUID) else uuid.UUID(c) for c in found.scalars()]
    started = time.perf_counter()
    for _ in range(0, rows, batch):
        async with sessions() as session, session.begin():
            await bulk.insert_deliveries(
                session,
                common=bulk.DeliveryColumns(
                    organization_id=message.organization_id,
                    message_id=message.id,
                    channel="email",
                    priority=2,
                    template_version_id=message.template_version_id,
                    now=datetime.now(UTC),
                ),
                slots=slots,
                rows=[(c, 0, None, None) for c in contacts],
            )
    return rows / (time.perf_counter() - started)


async def _strip_deliveries(sessions: async_sessionmaker[AsyncSession], *, postgres: bool) -> None:
    """Drop the secondary indexes (and, on PostgreSQL, the foreign keys) of ``deliveries``."""
    async with sessions() as session, session.begin():
        conn = await session.connection()
        if postgres:
            names = (
                await conn.exec_driver_sql(
                    "SELECT conname FROM pg_constraint WHERE conrelid = 'deliveries'::regclass "
                    "AND contype IN ('f', 'u')"
                )
            ).scalars()
            for name in list(names):
                await conn.exec_driver_sql(f"ALTER TABLE deliveries DROP CONSTRAINT {name}")
            query = "SELECT indexname FROM pg_indexes WHERE tablename = 'deliveries'"
        else:
            query = (
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' "
                "AND sql IS NOT NULL"
            )
        for name in list((await conn.exec_driver_sql(query)).scalars()):
            if name != "pk_deliveries":
                await conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


async def run(store: str, *, guests: int, batch: int, admin_dsn: str) -> FanoutResult:
    """Seed, start and fan out one campaign on a fresh database of ``store``."""
    result = FanoutResult(store=store, guests=guests, batch=batch)
    postgres = store == "postgres"
    async with _database(store, admin_dsn) as url:
        await upgrade_async(url)
        engine = create_engine(url)
        try:
            sessions = create_session_factory(engine)
            org, template = await _seed(sessions, guests=guests, postgres=postgres)
            started = time.perf_counter()
            campaign_id = await _start(sessions, org, template)
            result.start_seconds = time.perf_counter() - started
            timings: dict[str, float] = {}
            # the fan-out looks both up at call time: ``page`` in its own module
            _time_calls(fanout, "page", timings)
            _time_calls(bulk, "insert_deliveries", timings, key="insert")
            lease = await fanout.take(sessions, campaign_id)
            assert lease is not None
            result.rss_before_mb = _rss_mb()
            started = time.perf_counter()
            last = await fanout.fan_out(
                sessions,
                lease,
                batch_size=batch,
                on_progress=lambda _: result.rss_by_batch_mb.append(_rss_mb()),
            )
            result.seconds = time.perf_counter() - started
            assert last is not None
            assert last.status == "completed", last
            result.deliveries = last.created
            result.page_seconds = timings.get("page", 0.0)
            result.insert_seconds = timings.get("insert", 0.0)
            peak = max(result.rss_by_batch_mb, default=result.rss_before_mb)
            result.rss_peak_growth_mb = peak - result.rss_before_mb
            if result.rss_by_batch_mb:
                result.rss_first_to_last_mb = result.rss_by_batch_mb[-1] - result.rss_by_batch_mb[0]
            async with sessions() as session:
                message = await CampaignRepository(session, org).message_of(campaign_id)
            assert message is not None
            result.insert_only_rate = await _insert_only(
                sessions, message, rows=guests, batch=batch
            )
            await _strip_deliveries(sessions, postgres=postgres)
            result.bare_table_rate = await _insert_only(sessions, message, rows=guests, batch=batch)
        finally:
            await engine.dispose()
    return result


def table(results: list[FanoutResult]) -> Table:
    """The figures, one row per database."""
    out = Table(title=f"Campaign fan-out (target >= {FAN_OUT_TARGET:,} deliveries/s)")
    for column in (
        "database", "guests", "batch", "deliveries/s", "seconds", "start (count)",
        "audience reads", "inserts", "RSS growth peak", "RSS first->last batch",
        "insert only /s", "bare table /s",
    ):  # fmt: skip
        out.add_column(column, justify="left" if column == "database" else "right")
    for r in results:
        out.add_row(
            "SQLite" if r.store == "sqlite" else "PostgreSQL",
            f"{r.guests:,}",
            f"{r.batch:,}",
            f"{r.rate:,.0f}",
            f"{r.seconds:.2f}",
            f"{r.start_seconds:.2f}s",
            f"{r.page_seconds:.2f}s",
            f"{r.insert_seconds:.2f}s",
            f"{r.rss_peak_growth_mb:+.1f} MB",
            f"{r.rss_first_to_last_mb:+.1f} MB",
            f"{r.insert_only_rate:,.0f}",
            f"{r.bare_table_rate:,.0f}",
        )
    return out


def main() -> None:
    """Entry point of ``python -m bench.fanout``."""
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--guests", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=fanout.BATCH_SIZE)
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_DSN, help="admin DSN")
    parser.add_argument("--json", action="store_true", help="print one RESULT line per store")
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = [
        asyncio.run(run(s, guests=args.guests, batch=args.batch, admin_dsn=args.postgres))
        for s in stores
    ]
    if args.json:
        for r in results:
            print("RESULT", json.dumps(asdict(r)), flush=True)
        return
    console = make_console()
    console.print(machine())
    console.print(table(results))


if __name__ == "__main__":
    main()
