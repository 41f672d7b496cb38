"""``guestcomms contacts``: import a CSV file of guests into an organization, and optionally
into one of its events, with a progress bar and a per-row error report."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from guestcomms.audit.recorder import record_cli
from guestcomms.commands.support import (
    console,
    fail,
    organization_session,
    run_async,
    settings_or_exit,
    upgrade_or_exit,
)
from guestcomms.config import Settings
from guestcomms.contacts.repository import ContactRepository
from guestcomms.contacts.schemas import ImportReport
from guestcomms.contacts.service import ContactService, parse_csv
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.errors import GuestcommsError

ERRORS_SHOWN = 50  # refused rows printed; --errors-csv has them all

contacts_app = typer.Typer(help="Contacts: guests and vendors.", no_args_is_help=True)


def _read_rows(path: Path, *, guests: bool) -> list[dict[str, Any]]:
    """The rows of the CSV file, or a one-line error and exit 1."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise fail(f"cannot read {path}: it is not UTF-8 text") from None
    try:
        return parse_csv(text, guest_columns=guests)
    except GuestcommsError as e:
        raise fail(f"cannot read {path}: {e}") from None


@contacts_app.command("import")
def import_contacts(
    file: Annotated[Path, typer.Argument(help="a CSV file with a header row", show_default=False)],
    org: Annotated[str, typer.Option("--org", help="organization name")],
    event: Annotated[
        str | None,
        typer.Option(
            "--event",
            help="also add every contact to this event (evt_...); the role, rsvp, side, "
            "table, dietary and household columns then describe the guest",
        ),
    ] = None,
    errors_csv: Annotated[
        Path | None,
        typer.Option("--errors-csv", help="write every refused row (row, field, message) here"),
    ] = None,
) -> None:
    """Create or update (by email) the contacts of a CSV file: email, phone, first_name,
    last_name, timezone, locale, tags (split on ; or |); other columns become attributes."""
    settings = settings_or_exit()
    try:
        event_key = from_public(IdKind.EVENT, event) if event else None
    except InvalidIdError as e:
        raise fail(str(e)) from None
    rows = _read_rows(file, guests=event_key is not None)
    if errors_csv is not None and not errors_csv.parent.is_dir():
        # found out before the import rather than after it
        raise fail(f"cannot write {errors_csv}: no directory {errors_csv.parent}")
    upgrade_or_exit(settings)

    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("import", total=len(rows))
        report = run_async(
            lambda: _import(
                settings,
                org=org,
                rows=rows,
                event_id=event_key,
                advance=lambda done: progress.advance(task, done),
            )
        )
    _summary(report, with_event=event_key is not None)
    if errors_csv is not None:
        _write_errors(errors_csv, report)


async def _import(
    settings: Settings,
    *,
    org: str,
    rows: list[dict[str, Any]],
    event_id: uuid.UUID | None,
    advance: Callable[[int], None],
) -> ImportReport:
    """Import ``rows`` into the organization named ``org`` in one transaction."""
    async with organization_session(settings, org) as (session, organization):
        service = ContactService(
            ContactRepository(session, organization.id),
            default_phone_region=settings.default_phone_region,
        )
        report = await service.import_rows(rows, event_id=event_id, progress=advance)
        await record_cli(
            session,
            organization_id=organization.id,
            action="contacts.import",
            target=to_public(IdKind.EVENT, event_id) if event_id else None,
            detail={"rows": len(rows), "created": report.created, "updated": report.updated},
        )
        return report


def _summary(report: ImportReport, *, with_event: bool) -> None:
    table = Table(title="import")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    outcomes = [("created", report.created), ("updated", report.updated)]
    if with_event:
        outcomes += [
            ("added to event", report.added_to_event),
            ("updated in event", report.updated_in_event),
            ("households created", report.households_created),
        ]
    for name, count in [*outcomes, ("errors", len(report.errors))]:
        table.add_row(name, str(count))
    console.print(table)
    if not report.errors:
        return
    errors = Table(title="refused rows (row 1 is the first after the header)")
    for column in ("row", "field", "message"):
        errors.add_column(column, overflow="fold")
    for error in report.errors[:ERRORS_SHOWN]:
        errors.add_row(str(error.row), error.field or "", error.message)
    console.print(errors)
    if len(report.errors) > ERRORS_SHOWN:
        console.print(
            f"... and {len(report.errors) - ERRORS_SHOWN} more: --errors-csv PATH writes them all"
        )


def _write_errors(path: Path, report: ImportReport) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["row", "field", "message"])
            writer.writerows((e.row, e.field or "", e.message) for e in report.errors)
    except OSError as e:
        raise fail(f"cannot write {path}: {e.strerror or e}") from None
    console.print(f"{len(report.errors)} refused rows written to {path}", highlight=False)
