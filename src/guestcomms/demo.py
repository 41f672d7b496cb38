"""The sample wedding behind ``guestcomms demo``: 150 guests, an invitation template, and
one message to all of them sent through a real worker with a progress bar.

Also the source of the benchmark's guests and template, so both show the same content.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guestcomms.app import create_worker
from guestcomms.config import Settings
from guestcomms.contacts.repository import ContactRepository
from guestcomms.contacts.service import ContactService
from guestcomms.db.engine import create_session_factory
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ValidationFailedError
from guestcomms.events.repository import EventRepository
from guestcomms.logging import configure_logging
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.schemas import MessageCreate
from guestcomms.messages.service import MessageService
from guestcomms.organizations.repository import OrganizationRepository
from guestcomms.organizations.service import ensure_organization
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.schemas import TemplateCreate
from guestcomms.templates.service import TemplateService

console = Console()


DEMO_ORGANIZATION = "Demo Wedding"
DEMO_TEMPLATE = "demo-invitation"
DEMO_GUESTS = 150
DEMO_SEED = 20260912  # fixed, so every run upserts the same guests instead of adding more
DEMO_VENDOR_EVERY = 19  # one guest in 19 is a vendor (photographer, florist...)
DEMO_TABLES = 15
DEMO_POLL_SECONDS = 0.1  # how often the progress bar reads the message's delivery counts
# a delivery in one of these is still waiting for (or inside) the worker
PENDING_STATUSES = frozenset({DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value})

FIRST_NAMES = (
    "Amelia", "Olivia", "Isla", "Ava", "Mia", "Zoë", "Chloé", "Sofia", "Léa", "Priya",
    "Aisha", "Mei", "Yuki", "Ingrid", "Lucía", "Hannah", "Grace", "Freya", "Nadia", "Ines",
    "Oliver", "Noah", "Liam", "Arjun", "Mateo", "Luca", "Hugo", "Finn", "Kofi", "Omar",
    "Théo", "Jonas", "Rafael", "Kenji", "Samuel", "Ethan", "Tomás", "Felix", "Malik", "Ravi",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Davies", "Evans", "Murphy",
    "O'Brien", "MacLeod", "García", "Rossi", "Bianchi", "Müller", "Schmidt", "Dubois",
    "Lefèvre", "Novak", "Kowalski", "Andersson", "Nielsen", "Patel", "Sharma", "Khan",
    "Nakamura", "Tanaka", "Chen", "Wang", "Kim", "Nguyen", "Okafor", "Mensah", "Haddad",
    "Silva", "Costa", "Fernández", "Cohen", "Van der Berg", "Ó Súilleabháin",
)  # fmt: skip
VENDOR_ROLES = ("photographer", "florist", "caterer", "band", "planner", "baker", "officiant")

DEMO_VARIABLES = {"venue": "Villa Balbiano, Lake Como", "date": "Saturday 12 September 2026"}
DEMO_SUBJECT = "You're invited, {{ first_name }}!"
DEMO_HTML = """\
<div style="font-family: Georgia, serif; max-width: 34rem; margin: 2rem auto; \
text-align: center; color: #3d3a36">
  <p style="letter-spacing: .25em; text-transform: uppercase; color: #b08d57">Save the date</p>
  <h1 style="font-weight: normal">Ana &amp; Ben are getting married</h1>
  <p>Dear {{ first_name }},</p>
  <p>We would love you to join us on <strong>{{ date }}</strong>
     at <strong>{{ venue }}</strong>.</p>
  {% if "table" in attributes %}
  <p>You will be seated at table {{ attributes["table"] }}.</p>
  {% endif %}
  <p>With love,<br>Ana &amp; Ben</p>
</div>
"""
DEMO_TEXT = """\
Dear {{ first_name }},

Ana & Ben are getting married! We would love you to join us on {{ date }} at {{ venue }}.

{% if "table" in attributes %}
You will be seated at table {{ attributes["table"] }}.

{% endif %}
With love,
Ana & Ben
"""


def _email_part(name: str) -> str:
    # "Ó Súilleabháin" -> "osuilleabhain": example addresses stay plain ASCII
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_name.lower())


def demo_guests(count: int = DEMO_GUESTS) -> list[dict[str, Any]]:
    """The demo's guests as import rows: the same ``count`` rows on every run."""
    rng = random.Random(DEMO_SEED)
    rows: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if number % DEMO_VENDOR_EVERY == 0:
            tags = ["vendor"]
            attributes: dict[str, Any] = {
                "rsvp": "yes",
                "side": "both",
                "role": rng.choice(VENDOR_ROLES),
            }
        else:
            side = rng.choice(("bride", "groom"))
            circle = rng.choices(("family", "friends"), weights=(2, 3))[0]
            tags = [side, circle]
            attributes = {
                "rsvp": rng.choices(("yes", "no", "pending"), weights=(6, 1, 3))[0],
                "side": side,
                "table": rng.randint(1, DEMO_TABLES),
            }
        rows.append(
            {
                "email": f"{_email_part(first)}.{_email_part(last)}.{number}@example.com",
                "first_name": first,
                "last_name": last,
                "tags": tags,
                "attributes": attributes,
            }
        )
    return rows


@dataclass(frozen=True, slots=True)
class DemoMessage:
    """What the demo's set-up wrote: the message to follow and how the guests were upserted."""

    organization_id: uuid.UUID
    message_id: uuid.UUID
    recipients: int
    contacts_created: int
    contacts_updated: int
    template_version: int


async def setup(session: AsyncSession, settings: Settings) -> DemoMessage:
    """Upsert the organization, guests and template, and write the invitation message.

    The caller owns the transaction, as a request does: all of it commits or none of it.
    """
    organization = await ensure_organization(OrganizationRepository(session), DEMO_ORGANIZATION)
    contacts = ContactRepository(session, organization.id)
    templates = TemplateRepository(session, organization.id)
    guests = demo_guests()
    report = await ContactService(
        contacts, default_phone_region=settings.default_phone_region
    ).import_rows(guests)
    if report.errors:
        first = report.errors[0]
        raise ValidationFailedError(
            f"demo guest row {first.row} refused: {first.message}", field=first.field
        )
    template = await templates.by_name(DEMO_TEMPLATE)
    if template is None:
        template, _ = await TemplateService(templates).create(
            TemplateCreate(
                name=DEMO_TEMPLATE,
                subject=DEMO_SUBJECT,
                html=DEMO_HTML,
                text=DEMO_TEXT,
                variables=sorted(DEMO_VARIABLES),
            )
        )
    by_email = await contacts.by_emails(row["email"] for row in guests)
    created = await MessageService(
        messages=MessageRepository(session, organization.id),
        contacts=contacts,
        templates=templates,
        events=EventRepository(session, organization.id),
        max_recipients=settings.max_recipients_per_message,
    ).create(
        MessageCreate(
            template_id=to_public(IdKind.TEMPLATE, template.id),
            contact_ids=[to_public(IdKind.CONTACT, c.id) for c in by_email.values()],
            variables=DEMO_VARIABLES,
        )
    )
    return DemoMessage(
        organization_id=organization.id,
        message_id=created.message.id,
        recipients=created.message.recipient_count,
        contacts_created=report.created,
        contacts_updated=report.updated,
        template_version=created.version.version,
    )


async def _status_counts(
    sessions: async_sessionmaker[AsyncSession], demo: DemoMessage
) -> dict[str, int]:
    async with sessions() as session:
        return await MessageRepository(session, demo.organization_id).status_counts(demo.message_id)


async def send_with_progress(
    settings: Settings, engine: AsyncEngine, demo: DemoMessage
) -> dict[str, int]:
    """Run a real worker until none of the message's deliveries is queued or sending.

    The worker runs its normal loop (``Worker.run`` starts and closes the providers and
    reaps expired leases) in a task, while the progress bar follows the message's delivery
    counts in the database: the same numbers ``GET /v1/messages/{id}`` reports. Returns
    the final counts by status.
    """
    sessions = create_session_factory(engine)
    worker = create_worker(settings, engine=engine)
    running = asyncio.create_task(worker.run())
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("sending invitations", total=demo.recipients)
            while True:
                counts = await _status_counts(sessions, demo)
                pending = sum(n for status, n in counts.items() if status in PENDING_STATUSES)
                progress.update(bar, completed=demo.recipients - pending)
                # a worker that ended on its own (it failed to start) will process no more
                if pending == 0 or running.done():
                    break
                await asyncio.sleep(DEMO_POLL_SECONDS)
    finally:
        worker.stop()
        await running  # re-raises whatever stopped the worker early
    return counts


def summary(settings: Settings, demo: DemoMessage, counts: dict[str, int]) -> None:
    """Print the deliveries by status, and where to read the emails."""
    table = Table(title="Invitation deliveries")
    table.add_column("status")
    table.add_column("deliveries", justify="right")
    for status, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(status, str(count))
    table.add_section()
    table.add_row("total", str(sum(counts.values())))
    console.print(table)
    console.print(f"Message {to_public(IdKind.MESSAGE, demo.message_id)}", highlight=False)
    console.print(
        f"{DEMO_ORGANIZATION}: {demo.contacts_created} guests added, "
        f"{demo.contacts_updated} updated; template {DEMO_TEMPLATE} v{demo.template_version}."
    )
    if settings.smtp_host:
        console.print(f"Sent through SMTP at {settings.smtp_host}:{settings.smtp_port}.")
        return
    console.print(
        "Read the emails:  [bold]guestcomms outbox[/]\n"
        "or in a browser:  [bold]guestcomms serve[/], then http://127.0.0.1:8000/outbox"
    )


def quiet_logging(settings: Settings) -> None:
    # the worker's INFO lines would tear the progress bar; warnings and errors still show
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int) or level < logging.WARNING:
        configure_logging(level="WARNING", json=settings.log_json)
