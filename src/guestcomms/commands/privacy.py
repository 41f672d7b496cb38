"""``guestcomms privacy retention``: anonymise the deliveries older than each organization's
``retention_days`` (variables and errors nulled, event details and raw inbound payloads
dropped, dev outbox rows deleted), and record each run as a privacy request."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from guestcomms.audit.recorder import cli_actor, record_cli
from guestcomms.commands.support import console, database_session, run_async, settings_or_exit
from guestcomms.privacy.service import RetentionRun, retention_runs

privacy_app = typer.Typer(help="Privacy requests: retention.", no_args_is_help=True)


@privacy_app.command("retention")
def retention(
    org: Annotated[str | None, typer.Option("--org", help="only this organization")] = None,
    days: Annotated[
        int | None, typer.Option(help="keep this many days (default: settings.retention_days)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, change nothing")] = False,
) -> None:
    """Apply the retention policy of every organization that has one (or of --org)."""
    settings = settings_or_exit()
    if days is not None and days < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--days")

    async def main() -> list[RetentionRun]:
        async with database_session(settings) as session:
            runs = await retention_runs(
                session, organization=org, days=days, actor=cli_actor(), dry_run=dry_run
            )
            for run in [] if dry_run else runs:
                await record_cli(
                    session,
                    organization_id=run.organization_id,
                    action="privacy.retention",
                    detail={"retention_days": run.days, **run.counts},
                )
            return runs

    runs = run_async(main)
    title = "retention (dry run: nothing changed)" if dry_run else "retention"
    table = Table(title=title)
    for column in ("organization", "days", "deliveries", "events", "outbox", "inbound"):
        table.add_column(column)
    for run in runs:
        c = run.counts
        table.add_row(
            run.organization,
            str(run.days),
            *(
                str(c[k])
                for k in ("deliveries", "delivery_events", "outbox_messages", "inbound_events")
            ),
        )
    console.print(table)
