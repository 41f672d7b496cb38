"""Contacts import into an event: rows per second for a CSV of N guests, first as new
contacts, then again as updates (the same file imported twice).

    python -m bench.contacts_import --rows 50000                        # SQLite in a temp dir
    python -m bench.contacts_import --rows 50000 --database-url postgresql+asyncpg://...

The database must be empty or new (it is migrated first). Each run times what the CLI does
after reading the file: parse the CSV, validate every row, write, commit.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import tempfile
import time
from pathlib import Path

from guestcomms.contacts.repository import ContactRepository
from guestcomms.contacts.service import ContactService, parse_csv
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.db.migrate import upgrade
from guestcomms.domain.clock import utc_now
from guestcomms.events.models import Event
from guestcomms.organizations.models import Organization

SIDES = ("bride", "groom")
RSVPS = ("yes", "no", "maybe", "pending")


def guests_csv(count: int) -> str:
    """A CSV of ``count`` guests, two per household, with phones, tags and guest columns."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "email",
            "first_name",
            "last_name",
            "phone",
            "tags",
            "rsvp",
            "side",
            "table",
            "dietary",
            "household",
            "shoe_size",
        ]
    )
    for i in range(count):
        writer.writerow(
            [
                f"guest{i}@example.com",
                f"Guest{i}",
                f"Family{i // 2}",
                f"+1415555{i % 10_000:04d}",
                "family;friends" if i % 3 else "vendor-contact",
                RSVPS[i % len(RSVPS)],
                SIDES[i % 2],
                str(i % 200),
                "vegetarian" if i % 7 == 0 else "",
                f"Household {i // 2}",
                str(36 + i % 10),
            ]
        )
    return out.getvalue()


async def run(database_url: str, rows: int) -> None:
    """Import ``rows`` guests twice and print the rate of each pass."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            org = Organization(name=f"bench-{time.time_ns()}")
            session.add(org)
            await session.flush()
            event = Event(
                organization_id=org.id,
                name="Bench wedding",
                date=utc_now().date(),
                timezone="UTC",
                starts_at=utc_now(),
            )
            session.add(event)
        text = guests_csv(rows)
        for label in ("create", "update"):
            started = time.perf_counter()
            parsed = parse_csv(text, guest_columns=True)
            async with sessions() as session, session.begin():
                service = ContactService(ContactRepository(session, org.id))
                report = await service.import_rows(parsed, event_id=event.id)
            seconds = time.perf_counter() - started
            print(
                f"{label}: {rows} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s "
                f"(created {report.created}, updated {report.updated}, added to event "
                f"{report.added_to_event}, households {report.households_created}, "
                f"errors {len(report.errors)})"
            )
    finally:
        await engine.dispose()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(url, args.rows))


if __name__ == "__main__":
    main()
